"""Estate files for the lab: accounts, simulated hosts, OS presets, registry contents and recipes."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, SecretStr, ValidationInfo, field_validator, model_validator

from scanner.core.models import IPSEC_KEY, POLICYAGENT_KEY, VALUE_NAME, Strict, parse_version
from scanner.core.yamlfile import FileError, YamlDocument, load_file

HKLM = 2147483650
IPSEC_KEY_NT5 = "SYSTEM\\CurrentControlSet\\Services\\IPSEC"  # spelling stored on XP/2003

RegType = Literal["REG_SZ", "REG_EXPAND_SZ", "REG_BINARY", "REG_DWORD", "REG_MULTI_SZ", "REG_QWORD"]
# StdRegProv EnumValues type codes (winnt.h REG_* constants).
TYPE_CODES: dict[str, int] = {
    "REG_SZ": 1,
    "REG_EXPAND_SZ": 2,
    "REG_BINARY": 3,
    "REG_DWORD": 4,
    "REG_MULTI_SZ": 7,
    "REG_QWORD": 11,
}
FAULT_KINDS = (
    "refuse",
    "blackhole",
    "trickle",
    "auth-reject",
    "wmi-access-denied",
    "soap-fault",
    "quota",
    "http-502-html",
    "reset",
    "malformed-xml",
    "xml-bomb",
    "oversize",
    "wrong-relatesto",
    "slow",
    "quota-wmierror",
    "access-denied-hresult",
    "wmi-svc-access-denied",
    "wbem-access-denied",
    "handshake-fault",
    "plain-fault",
    "503-once",
    "drop-once",
)
# Faults that take a WSManFault code, optionally with the HTTP status to send it with: kind:<code>[@<status>].
CODE_FAULTS = ("soap-fault", "plain-fault", "handshake-fault")


class OsSpec(Strict):
    """Win32_OperatingSystem identity of a simulated host."""

    version: str = Field(pattern=r"^[0-9]{1,10}\.[0-9]{1,10}\.[0-9]{1,10}$")  # a subset of parse_version
    build: int = Field(ge=0)
    service_pack: int = Field(default=0, ge=0, le=9)
    caption: str
    csd_version: str | None = Field(default=None, validate_default=True)  # derived from service_pack when omitted
    architecture: Literal["32-bit", "64-bit"] = "64-bit"
    product_type: Literal[1, 2, 3] = 1  # 1 workstation, 2 domain controller, 3 server

    @field_validator("csd_version")
    @classmethod
    def _csd(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Derived while validating (service_pack is validated first): the model is frozen once built.
        service_pack = info.data.get("service_pack")
        return f"Service Pack {service_pack}" if value is None and service_pack else value

    @property
    def nt(self) -> tuple[int, int]:
        """Return (major, minor) of the NT version."""
        parts = parse_version(self.version) or ()  # never empty: the field pattern is stricter
        return parts[0], parts[1]


def _preset(
    version: str, sp: int, caption: str, product_type: int = 1, arch: str = "64-bit"
) -> dict[str, Any]:
    return {
        "version": version,
        "build": (parse_version(version) or ())[-1],
        "service_pack": sp,
        "caption": caption,
        "product_type": product_type,
        "architecture": arch,
    }


# Values as Win32_OperatingSystem reports them on the released builds (captions are the en-US ones).
OS_PRESETS: dict[str, OsSpec] = {
    name: OsSpec.model_validate(spec)
    for name, spec in {
        "win2000": _preset("5.0.2195", 4, "Microsoft Windows 2000 Professional", 1, "32-bit"),
        "xp-sp1": _preset("5.1.2600", 1, "Microsoft Windows XP Professional", 1, "32-bit"),
        "xp-sp2": _preset("5.1.2600", 2, "Microsoft Windows XP Professional", 1, "32-bit"),
        "xp-sp3": _preset("5.1.2600", 3, "Microsoft Windows XP Professional", 1, "32-bit"),
        "2003-sp1": _preset(
            "5.2.3790", 1, "Microsoft(R) Windows(R) Server 2003, Standard Edition", 3, "32-bit"
        ),
        "2003-sp2": _preset(
            "5.2.3790", 2, "Microsoft(R) Windows(R) Server 2003, Standard Edition", 3, "32-bit"
        ),
        "vista": _preset("6.0.6002", 2, "Microsoft® Windows Vista™ Business", 1, "32-bit"),
        "2008": _preset("6.0.6002", 2, "Microsoft® Windows Server® 2008 Standard ", 3),
        "2008r2": _preset("6.1.7601", 1, "Microsoft Windows Server 2008 R2 Standard ", 3),
        "win7": _preset("6.1.7601", 1, "Microsoft Windows 7 Enterprise ", 1),
        "2012r2": _preset("6.3.9600", 0, "Microsoft Windows Server 2012 R2 Standard", 3),
        "win10": _preset("10.0.19045", 0, "Microsoft Windows 10 Enterprise", 1),
        "win11": _preset("10.0.22631", 0, "Microsoft Windows 11 Enterprise", 1),
        "2016": _preset("10.0.14393", 0, "Microsoft Windows Server 2016 Standard", 3),
        "2019": _preset("10.0.17763", 0, "Microsoft Windows Server 2019 Standard", 3),
        "2022": _preset("10.0.20348", 0, "Microsoft Windows Server 2022 Standard", 3),
        "2025": _preset("10.0.26100", 0, "Microsoft Windows Server 2025 Standard", 3),
    }.items()
}


class RegValueSpec(Strict):
    """One registry value: its type and data, checked against the type."""

    type: RegType
    data: int | str | list[str]

    @model_validator(mode="after")
    def _check(self) -> RegValueSpec:
        t, d = self.type, self.data
        if t == "REG_DWORD" and not (isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 0xFFFFFFFF):
            raise ValueError("REG_DWORD data must be an integer 0..4294967295")
        if t == "REG_QWORD" and not (
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 0xFFFFFFFFFFFFFFFF
        ):
            raise ValueError("REG_QWORD data must be an integer 0..18446744073709551615")
        if t in ("REG_SZ", "REG_EXPAND_SZ") and not isinstance(d, str):
            raise ValueError(f"{t} data must be a string")
        if t == "REG_MULTI_SZ" and not (isinstance(d, list) and all(isinstance(s, str) for s in d)):
            raise ValueError("REG_MULTI_SZ data must be a list of strings")
        if t == "REG_BINARY" and not (isinstance(d, str) and re.fullmatch(r"(?:[0-9a-fA-F]{2})*", d)):
            raise ValueError("REG_BINARY data must be a hex string with an even number of digits")
        return self


def _check_fault(v: str | None) -> str | None:
    if v is None:
        return v
    kind, _, arg = v.partition(":")
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault {kind!r}; one of: {', '.join(FAULT_KINDS)}")
    if kind in CODE_FAULTS:
        code, at, status = arg.partition("@")
        if not code.isdigit() or (at and not (status.isdigit() and 400 <= int(status) <= 599)):
            raise ValueError(f"fault {kind} needs a code and optionally a 4xx/5xx status: {kind}:<code>[@<status>]")
    elif kind == "slow":
        if not arg.isdigit():
            raise ValueError(f"fault {kind} needs a number: {kind}:<n>")
    elif arg:
        raise ValueError(f"fault {kind} takes no argument")
    return v


Registry = dict[str, dict[str, RegValueSpec] | None]
NonNeg = Annotated[int, Field(ge=0)]
# A Win32_Service control method's ReturnValue (the class docs list 0..24; 0 is success).
ServiceReturn = Annotated[int, Field(ge=0, le=24)]


class PolicyAgentSpec(Strict):
    """The IPsec Policy Agent service of a host (Win32_Service Name=PolicyAgent; docs/lab.md)."""

    state: Literal["Running", "Stopped"] = "Running"  # at lab start
    stop_error: ServiceReturn = 0  # StopService answers this (2 access denied, 3 dependents running...)
    start_error: ServiceReturn = 0  # StartService answers this and the service stays Stopped (7, 14...)
    stop_ms: NonNeg = 0  # time spent in "Stop Pending" before "Stopped"
    start_ms: NonNeg = 0  # time spent in "Start Pending" before "Running"


class HostFields(Strict):
    """Fields a host may set, or inherit from the estate defaults."""

    os: str | OsSpec = "win10"
    registry: Registry = Field(default_factory=dict)
    fault: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    latency_ms: NonNeg = 0
    wmi_ms: NonNeg = 5
    shell_create_ms: NonNeg = 50
    process_start_ms: NonNeg = 400
    denied_keys: list[str] = Field(default_factory=list)  # keys whose ACL denies reading (ReturnValue 5)
    # Keys whose ACL lets the account read but not write: Set*/DeleteValue/CreateKey answer 5.
    write_denied_keys: list[str] = Field(default_factory=list)
    policyagent: PolicyAgentSpec = Field(default_factory=PolicyAgentSpec)
    scheme: Literal["http", "https"] = "http"  # https: TLS listener that also accepts Basic
    # The WinRM stack the host runs; None: the one its OS shipped with (docs/lab.md, WinRM personas).
    winrm: Literal["1.1", "2.0", "3.0"] | None = None
    # Whether the NTLM CHALLENGE carries the host's version (MS-NLMP 2.2.2.10); false: no VERSION.
    ntlm_version: bool = True
    # disabled: NTLM is refused and only Kerberos is accepted (docs/lab.md#kerberos), as on a host
    # with "Network security: Restrict NTLM: Incoming NTLM traffic" set to deny all accounts.
    ntlm: Literal["enabled", "disabled"] = "enabled"
    # strict: an HTTPS logon must carry the TLS channel binding (RFC 5929), as with WinRM's
    # CbtHardeningLevel=Strict; none: bindings are not checked.
    cbt: Literal["none", "strict"] = "none"

    @field_validator("os")
    @classmethod
    def _os(cls, v: str | OsSpec) -> str | OsSpec:
        if isinstance(v, str) and v not in OS_PRESETS:
            raise ValueError(f"unknown OS preset {v!r}; one of: {', '.join(OS_PRESETS)}")
        return v

    @field_validator("fault")
    @classmethod
    def _fault(cls, v: str | None) -> str | None:
        return _check_fault(v)


class HostSpec(HostFields):
    """One simulated host as written in the estate file."""

    name: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Account(Strict):
    """A username/password every simulated host accepts."""

    username: str = Field(min_length=1)
    password: SecretStr


class Recipe(HostFields):
    """Generate many hosts: names prefix + zero-padded number, modes drawn with a seeded RNG."""

    count: int = Field(ge=1, le=100_000)
    prefix: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    start: int = Field(default=1, ge=0)
    width: int = Field(default=4, ge=1, le=9)
    seed: int = 0
    # "absent", "0", "1", "2", "3" (invalid value), "sz" (REG_SZ "2"), "key-absent" -> weight
    mode_mix: dict[str, float] = Field(default_factory=lambda: {"absent": 1.0})
    fault_mix: dict[str, float] = Field(default_factory=dict)  # fault -> share of hosts (rest: none)

    @field_validator("mode_mix")
    @classmethod
    def _modes(cls, v: dict[str, float]) -> dict[str, float]:
        bad = sorted(set(v) - set(MODE_CHOICES))
        if bad:
            raise ValueError(f"unknown mode(s) {bad}; one of: {', '.join(MODE_CHOICES)}")
        if any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError("mode weights must be >= 0 with a positive sum")
        return v

    @field_validator("fault_mix")
    @classmethod
    def _faults(cls, v: dict[str, float]) -> dict[str, float]:
        for k, w in v.items():
            _check_fault(k)
            if w < 0:
                raise ValueError("fault shares must be >= 0")
        if sum(v.values()) > 1:
            raise ValueError("fault shares must add up to at most 1")
        return v


MODE_CHOICES = ("absent", "key-absent", "0", "1", "2", "3", "sz")


class Estate(Strict):
    """A whole estate file."""

    accounts: list[Account] = Field(min_length=1)
    defaults: dict[str, Any] = Field(default_factory=dict)
    hosts: list[HostSpec] = Field(default_factory=list)
    generate: list[Recipe] = Field(default_factory=list)
    _resolved: list[Host] | None = PrivateAttr(default=None)
    _path: str = PrivateAttr(default="<estate>")

    def resolved(self) -> list[Host]:
        """Return every host, explicit and generated, resolved (cached)."""
        if self._resolved is None:
            self._resolved = resolve_hosts(self, None, self._path)
        return self._resolved

    @field_validator("defaults")
    @classmethod
    def _defaults(cls, v: dict[str, Any]) -> dict[str, Any]:
        HostFields.model_validate(v)  # reports unknown or invalid default fields
        return v


# ---------------------------------------------------------------- resolved hosts


@dataclass(slots=True)
class RegKey:
    """A registry key: stored name, values by lower-case name, sub-keys by lower-case name."""

    name: str
    values: dict[str, tuple[str, str, int | str | list[str]]] = field(default_factory=dict)
    subkeys: dict[str, str] = field(default_factory=dict)  # lower -> stored spelling


@dataclass(slots=True)
class Fault:
    """A parsed fault: kind, optional numeric argument and the HTTP status a fault is sent with."""

    kind: str
    arg: int = 0
    status: int = 500


@dataclass(slots=True)
class Host:
    """One simulated host, resolved: OS, registry tree, fault, costs."""

    name: str
    os: OsSpec
    keys: dict[str, RegKey]  # lower-case full path -> key
    fault: Fault | None
    tags: dict[str, str]
    latency_ms: int
    wmi_ms: int
    shell_create_ms: int
    process_start_ms: int
    denied: frozenset[str]
    scheme: str = "http"
    winrm: str = "3.0"
    ntlm_version: bool = True
    ntlm: bool = True  # False: only Kerberos is accepted
    cbt_strict: bool = False  # HTTPS logons must carry the channel binding
    write_denied: frozenset[str] = frozenset()  # lower-case key paths; `denied` keys are not writable either
    policyagent: PolicyAgentSpec = field(default_factory=PolicyAgentSpec)

    @property
    def legacy(self) -> bool:
        """Return whether the host runs WinRM 1.1 (XP SP2 / Server 2003: ports 80/443, HTTP.sys 1.0)."""
        return self.winrm == "1.1"

    def key(self, path: str) -> RegKey | None:
        """Return the key at `path` (case-insensitive, as the registry API matches)."""
        return self.keys.get(path.strip("\\").lower())


SERVICES = "SYSTEM\\CurrentControlSet\\Services"
BASE_KEYS = [
    SERVICES + "\\LanmanServer",
    SERVICES + "\\Tcpip\\Parameters",
    "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion",
]


def preset_keys(os: OsSpec) -> list[str]:
    """Return the keys that exist on this OS out of the box (the IPsec service keys plus a few neighbours)."""
    if os.nt >= (6, 0):
        return [*BASE_KEYS, SERVICES + "\\BFE", POLICYAGENT_KEY]
    # NT 5.x: the IPSEC driver key and the PolicyAgent service key both exist.
    return [*BASE_KEYS, IPSEC_KEY_NT5, POLICYAGENT_KEY]


def build_registry(os: OsSpec, registry: Registry) -> dict[str, RegKey]:
    """Build the key tree from the OS preset keys plus the file's registry section."""
    flat: dict[str, tuple[str, dict[str, RegValueSpec]]] = {}
    for path in preset_keys(os):
        flat[path.lower()] = (path, {})
    for path, values in registry.items():
        p = path.strip("\\")
        low = p.lower()
        if values is None:
            for k in [k for k in flat if k == low or k.startswith(low + "\\")]:
                del flat[k]
            continue
        stored = flat.get(low, (p, {}))[0] if low in flat else p
        merged = dict(flat.get(low, (p, {}))[1])
        merged.update(values)
        flat[low] = (stored, merged)
    keys: dict[str, RegKey] = {}
    for low, (stored, values) in flat.items():
        key = keys.setdefault(low, RegKey(stored))
        key.name = stored
        for vname, spec in values.items():
            key.values[vname.lower()] = (vname, spec.type, spec.data)
        # implicit parents, so EnumKey walks the tree like regedit
        parts = stored.split("\\")
        for i in range(len(parts) - 1, 0, -1):
            parent = "\\".join(parts[:i])
            pkey = keys.setdefault(parent.lower(), RegKey(parent))
            pkey.subkeys.setdefault(parts[i].lower(), parts[i])
    return keys


def _overlay(defaults: dict[str, Any], spec: BaseModel) -> HostFields:
    """Return the host fields of `spec` laid over the estate defaults."""
    base = HostFields.model_validate(defaults)
    update = {k: getattr(spec, k) for k in spec.model_fields_set if k in HostFields.model_fields}
    return base.model_copy(update=update)


def _resolve(name: str, fields: HostFields) -> Host:
    os = fields.os if isinstance(fields.os, OsSpec) else OS_PRESETS[fields.os]
    fault = None
    if fields.fault:
        kind, _, arg = fields.fault.partition(":")
        code, _, status = arg.partition("@")
        fault = Fault(kind, int(code) if code else 0, int(status) if status else 500)
    return Host(
        name=name,
        os=os,
        keys=build_registry(os, fields.registry),
        fault=fault,
        tags=dict(fields.tags),
        latency_ms=fields.latency_ms,
        wmi_ms=fields.wmi_ms,
        shell_create_ms=fields.shell_create_ms,
        process_start_ms=fields.process_start_ms,
        denied=frozenset(k.strip("\\").lower() for k in fields.denied_keys),
        scheme=fields.scheme,
        winrm=fields.winrm or default_winrm(os),
        ntlm_version=fields.ntlm_version,
        ntlm=fields.ntlm == "enabled",
        cbt_strict=fields.cbt == "strict",
        write_denied=frozenset(k.strip("\\").lower() for k in fields.write_denied_keys),
        policyagent=fields.policyagent,
    )


def default_winrm(os: OsSpec) -> str:
    """Return the WinRM persona of an OS: 1.1 on NT 5.x (the XP SP2 / Server 2003 download), else 3.0.

    NT 6.0/6.1 hosts may run 2.0 or 3.0+ depending on the Windows Management Framework installed;
    the lab gives them 3.0 unless the estate says `winrm: "2.0"` (docs/lab.md, WinRM personas).
    """
    return "1.1" if os.nt < (6, 0) else "3.0"


def applicable_key(os: OsSpec) -> str | None:
    """Return the key the NAT-T value lives at for this OS (docs/domain.md#registry-locations)."""
    if os.nt >= (6, 0):
        return POLICYAGENT_KEY
    if os.nt == (5, 0):
        return None
    return IPSEC_KEY


def _mode_registry(os: OsSpec, mode: str) -> Registry:
    key = applicable_key(os) or POLICYAGENT_KEY
    if mode == "absent":
        return {}
    if mode == "key-absent":
        return {key: None}
    if mode == "sz":
        return {key: {VALUE_NAME: RegValueSpec(type="REG_SZ", data="2")}}
    return {key: {VALUE_NAME: RegValueSpec(type="REG_DWORD", data=int(mode))}}


def expand_recipe(recipe: Recipe, defaults: dict[str, Any] | None = None) -> list[tuple[str, HostFields]]:
    """Expand a recipe into (name, fields) pairs; the same seed gives the same hosts."""
    rng = random.Random(recipe.seed)  # noqa: S311 - reproducible test data, not security
    modes = list(recipe.mode_mix)
    weights = [recipe.mode_mix[m] for m in modes]
    faults = list(recipe.fault_mix.items())
    base = _overlay(defaults or {}, recipe)
    os = base.os if isinstance(base.os, OsSpec) else OS_PRESETS[base.os]
    out: list[tuple[str, HostFields]] = []
    for i in range(recipe.count):
        name = f"{recipe.prefix}{recipe.start + i:0{recipe.width}d}"
        mode = rng.choices(modes, weights)[0]
        roll = rng.random()
        fault = base.fault
        acc = 0.0
        for f, share in faults:
            acc += share
            if roll < acc:
                fault = f
                break
        reg = dict(base.registry)
        reg.update(_mode_registry(os, mode))
        out.append((name, base.model_copy(update={"registry": reg, "fault": fault})))
    return out


def resolve_hosts(estate: Estate, doc: YamlDocument | None = None, path: str = "<estate>") -> list[Host]:
    """Resolve defaults, presets and recipes into hosts; names must be unique (case-insensitive)."""
    hosts: list[Host] = []
    seen: set[str] = set()

    def add(name: str, fields: HostFields, loc: tuple[str | int, ...]) -> None:
        low = name.lower()
        if low in seen:
            line, col = doc.where(loc) if doc else (None, None)
            raise FileError(path, line, col, f"duplicate host name {name!r}")
        seen.add(low)
        hosts.append(_resolve(name, fields))

    for i, spec in enumerate(estate.hosts):
        add(spec.name, _overlay(estate.defaults, spec), ("hosts", i, "name"))
    for r, recipe in enumerate(estate.generate):
        for name, fields in expand_recipe(recipe, estate.defaults):
            add(name, fields, ("generate", r))
    return hosts


def load_estate(path: str | Path) -> Estate:
    """Load and validate an estate file; errors name file:line."""
    doc = load_file(path)
    if not isinstance(doc.data, dict):
        raise FileError(str(path), 1, 1, "an estate file must be a mapping with accounts and hosts")
    estate = doc.validate(Estate)
    estate._resolved = resolve_hosts(estate, doc, str(path))
    estate._path = str(path)
    return estate
