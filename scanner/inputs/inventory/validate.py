"""Validate inventory entries into Targets, shared by every file format (docs/inventory.md).

Each format module turns its file into `Entry` values that remember where they were written;
`finish` builds the Targets, refuses duplicates, and raises one InventoryError listing every
problem in line order.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from scanner.core.errors import NattError
from scanner.core.models import (
    DEFAULT_SITE,
    OS_VERSION_PATTERN,
    SPN_PATTERN,
    AuthMethod,
    Frozen,
    Scheme,
    Target,
    WinRMStack,
    site_problem,
)
from scanner.core.sanitize import has_unsafe

MAX_KEPT_PROBLEMS = 10_000  # bounded memory and output for a file that is wrong on every line
HTTP_PORT, HTTPS_PORT = 5985, 5986  # WinRM's listener defaults (docs/domain.md#ports-and-rights)
LEGACY_HTTP_PORT, LEGACY_HTTPS_PORT = 80, 443  # WinRM 1.1's defaults (MS-WSMV 2.2.4.5, docs/wire.md)
_OS_VERSION = re.compile(OS_VERSION_PATTERN)
_SPN = re.compile(SPN_PATTERN)

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)
URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/")
PORT = re.compile(r"[1-9][0-9]{0,4}", re.ASCII)
_WHERE = re.compile(r":([0-9]+)(?::([0-9]+))?\Z")


class InventoryError(NattError):
    """An unusable inventory; str() lists every "path:line: message", one problem per line."""

    def __init__(self, problems: Sequence[str]) -> None:
        # Every problem is shown: a hidden one is the one the user needed (docs/inventory.md).
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class SourceSummary(Frozen):
    """What one `sources:` entry of an inventory contributed, for `inventory show` and the report."""

    type: str  # ldap, ansible, file
    name: str  # "ldaps://dc1.corp.example:636", "ansible:inventories/prod.ini", "file:hosts.csv"
    hosts: int
    skipped: dict[str, int] = Field(default_factory=dict)  # "disabled": 12, "stale": 3, ...


class Inventory(Frozen):
    """The validated hosts of one inventory file (and of the sources it lists), in file order."""

    path: str
    targets: tuple[Target, ...]
    warnings: tuple[str, ...] = ()
    sources: tuple[SourceSummary, ...] = ()  # empty: the file lists no `sources:`


@dataclass(frozen=True)
class SourceSpec:
    """One entry of a YAML inventory's `sources:` list as written, validated by scanner.inputs.sources."""

    index: int
    data: Any
    where: Callable[[tuple[str | int, ...]], str]  # where a field of the entry is written: "path:line:col"


def show(value: str, limit: int = 80) -> str:
    """Quote a value for an error message with control and non-ASCII characters escaped."""
    text = value if len(value) <= limit else value[:limit] + "..."
    return ascii(text)


def host_problem(value: str) -> str | None:
    """Return why `value` is not a host name or IP literal, or None when it is one."""
    if value == "":
        return "is empty"
    if has_unsafe(value):
        return "contains control or invisible characters"
    if any(c.isspace() for c in value):
        return "contains whitespace (one host per entry)"
    if "," in value:
        return "contains a comma (one host per entry)"
    if "://" in value or URL_SCHEME.match(value):
        return "has a URL scheme; give the host only"
    if "@" in value:
        return "contains '@' (user info); credentials never go in the inventory"
    if "/" in value or "\\" in value:
        return "contains a path separator; give the host only"
    if "%" in value:
        return "contains '%' (IPv6 zone identifiers are not supported)"
    if ":" in value:
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return "is not a valid IPv6 address (a text line gives a port as [address]:port)"
        return None
    if not value.isascii():
        return "is not ASCII; write an internationalised name in its xn-- form"
    hostname = value[:-1] if value.endswith(".") else value
    labels = hostname.split(".")
    if labels[-1].isdigit():
        # An all-numeric last label only makes sense as an IPv4 address (RFC 1123 section 2.1).
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            return "is not a valid IPv4 address"
        return None
    if len(hostname) > 253:
        return "is longer than 253 characters"
    for label in labels:
        if not _LABEL.fullmatch(label):
            return f"has an invalid label {show(label)} (RFC 1123: letters, digits, inner hyphens, 1-63)"
    return None


def fixed(where: str) -> Callable[[str], str]:
    """Return a locator that names the same place for every field (text and CSV entries)."""
    return lambda _field: where


def address_key(address: str) -> str:
    """Return an address in the form duplicates are compared in: canonical IP, or the lower-cased name."""
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return address.rstrip(".").lower()


def text_problem(value: str) -> str | None:
    if value == "":
        return "is empty"
    if has_unsafe(value):
        return "contains control or invisible characters"
    return None


@dataclass
class Entry:
    """One host as written, before validation; `where(field)` names its place in the file."""

    source: str
    where: Callable[[str], str]
    name: str
    address: str | None = None
    port: int | str | None = None
    scheme: Scheme | str | None = None
    transport: AuthMethod | str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    group: str | None = None
    site: str | None = None  # None: the inventory's or the configuration's default site
    ip: bool = False  # produced by CIDR expansion or an IP literal already checked
    winrm: WinRMStack | str | None = None
    os_version: str | None = None
    # The name is the address as written (text inventories): the same address on several ports
    # is then several hosts, each named address:port (docs/inventory.md "Text").
    named_by_address: bool = False
    spn: str | None = None


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Problems:
    """Collects problems across the file so one error lists them all, in line order."""

    def __init__(self) -> None:
        self._items: list[tuple[int, int, str]] = []

    def add(self, where: str, message: str) -> None:
        if len(self._items) == MAX_KEPT_PROBLEMS:
            self._items.append((1 << 62, 0, f"{where}: stopped after {MAX_KEPT_PROBLEMS} problems"))
        elif len(self._items) < MAX_KEPT_PROBLEMS:
            match = _WHERE.search(where)
            line, column = (int(match[1]), int(match[2] or 0)) if match else (0, 0)
            self._items.append((line, column, f"{where}: {message}"))

    @property
    def items(self) -> list[str]:
        return [text for _, _, text in sorted(self._items, key=lambda item: item[:2])]


@dataclass(frozen=True)
class Defaults:
    port: int
    scheme: Scheme
    transport: AuthMethod
    winrm: WinRMStack = WinRMStack.CURRENT
    site: str = DEFAULT_SITE


def _port_for(scheme: Scheme, default_port: int, winrm: WinRMStack = WinRMStack.CURRENT) -> int:
    # An untouched HTTP default means "the scheme's standard WinRM port" (80/443 for WinRM 1.1).
    if default_port == HTTP_PORT and winrm is WinRMStack.LEGACY:
        return LEGACY_HTTPS_PORT if scheme is Scheme.HTTPS else LEGACY_HTTP_PORT
    if scheme is Scheme.HTTPS and default_port == HTTP_PORT:
        return HTTPS_PORT
    return default_port


def parse_port(text: str) -> int | None:
    if PORT.fullmatch(text) and int(text) <= 65535:
        return int(text)
    return None


def _build(entry: Entry, defaults: Defaults, problems: Problems) -> Target | None:
    """Validate one entry and build its Target, or record why it is refused."""
    ok = True
    if not entry.ip:
        why = host_problem(entry.name)
        if why:
            problems.add(entry.where("name"), f"name {show(entry.name)} {why}")
            ok = False
    address = entry.name if entry.address is None else entry.address
    if entry.address is not None:
        why = host_problem(entry.address)
        if why:
            problems.add(entry.where("address"), f"address {show(entry.address)} {why}")
            ok = False
    scheme: Scheme | None = defaults.scheme
    if isinstance(entry.scheme, str) and not isinstance(entry.scheme, Scheme):
        try:
            scheme = Scheme(entry.scheme)
        except ValueError:
            problems.add(entry.where("scheme"), f"scheme {show(entry.scheme)} must be one of: http, https")
            scheme, ok = None, False
    elif entry.scheme is not None:
        scheme = entry.scheme
    transport: AuthMethod | None = defaults.transport
    if isinstance(entry.transport, str) and not isinstance(entry.transport, AuthMethod):
        try:
            transport = AuthMethod(entry.transport)
        except ValueError:
            allowed = ", ".join(m.value for m in AuthMethod)
            message = f"transport {show(entry.transport)} must be one of: {allowed}"
            problems.add(entry.where("transport"), message)
            transport, ok = None, False
    elif entry.transport is not None:
        transport = entry.transport
    winrm: WinRMStack | None = defaults.winrm
    if isinstance(entry.winrm, str) and not isinstance(entry.winrm, WinRMStack):
        try:
            winrm = WinRMStack(entry.winrm)
        except ValueError:
            problems.add(entry.where("winrm"), f"winrm {show(entry.winrm)} must be one of: current, legacy")
            winrm, ok = None, False
    elif entry.winrm is not None:
        winrm = entry.winrm
    if entry.os_version is not None and not _OS_VERSION.match(entry.os_version):
        message = f"os_version {show(entry.os_version)} must be a Windows version such as 10.0.19045 or 6.1"
        problems.add(entry.where("os_version"), message)
        ok = False
    port: int | None
    if entry.port is None:
        port = _port_for(scheme or Scheme.HTTP, defaults.port, winrm or WinRMStack.CURRENT)
    elif isinstance(entry.port, int):
        port = entry.port if 1 <= entry.port <= 65535 else None
    else:
        port = parse_port(entry.port)
    if port is None:
        written = show(entry.port) if isinstance(entry.port, str) else str(entry.port)
        problems.add(entry.where("port"), f"port {written} must be an integer 1..65535")
        ok = False
    if transport is AuthMethod.BASIC and scheme is Scheme.HTTP:
        # Basic over plain HTTP sends the password in clear (docs/domain.md#message-encryption): refused at load.
        message = "transport basic requires scheme https (Basic over HTTP is refused)"
        problems.add(entry.where("transport"), message)
        ok = False
    if entry.spn is not None and not _SPN.match(entry.spn):
        message = f"spn {show(entry.spn)} must be SERVICE/host, such as HTTP/web01.corp.example.com (no realm, no port)"
        problems.add(entry.where("spn"), message)
        ok = False
    if transport is AuthMethod.KERBEROS and entry.spn is None and _is_address(entry.name):
        # Kerberos asks the KDC for HTTP/<name>: an address names no service principal (docs/authentication.md#spns).
        message = (
            f"{show(entry.name)} is an IP address: transport kerberos needs the host's name (its SPN is"
            " HTTP/<name>; give the address separately) or an explicit spn"
        )
        problems.add(entry.where("transport" if entry.transport is not None else "name"), message)
        ok = False
    for key, value in entry.tags.items():
        why = text_problem(key) or text_problem(value)
        if why:
            problems.add(entry.where("tags"), f"tag {show(key)} {why}")
            ok = False
    if entry.group is not None:
        why = text_problem(entry.group)
        if why:
            problems.add(entry.where("group"), f"group {show(entry.group)} {why}")
            ok = False
    site = defaults.site if entry.site is None else entry.site
    why = site_problem(site)
    if why:
        problems.add(entry.where("site"), f"site {show(site)} {why}")
        ok = False
    if not ok or port is None or scheme is None or transport is None or winrm is None:
        return None
    return Target(
        name=entry.name,
        address=address,
        port=port,
        scheme=scheme,
        transport=transport,
        tags=dict(entry.tags),
        group=entry.group,
        source=entry.source,
        winrm=winrm,
        os_version=entry.os_version,
        spn=entry.spn,
        site=site,
    )


def _endpoint_name(target: Target) -> str:
    host = f"[{target.address}]" if ":" in target.address else target.address
    return f"{host}:{target.port}"


def _name_by_endpoint(built: list[tuple[Entry, Target]]) -> None:
    """Name each host listed by address on several ports `address:port`: one host per endpoint."""
    groups: dict[str, list[int]] = {}
    for index, (entry, target) in enumerate(built):
        if entry.named_by_address:
            groups.setdefault(target.name.rstrip(".").lower(), []).append(index)
    for indexes in groups.values():
        if len({built[i][1].port for i in indexes}) > 1:
            for i in indexes:
                entry, target = built[i]
                built[i] = (entry, target.model_copy(update={"name": _endpoint_name(target)}))


def _check_duplicates(built: list[tuple[Entry, Target]], problems: Problems) -> None:
    _name_by_endpoint(built)
    names: dict[str, Entry] = {}
    endpoints: dict[tuple[str, int], Entry] = {}
    for entry, target in built:
        name_key = target.name.rstrip(".").lower()
        first = names.setdefault(name_key, entry)
        if first is not entry:
            problems.add(
                entry.where("name"),
                f"duplicate host {show(target.name)} (same name as {first.where('name')})",
            )
            continue
        endpoint_key = (address_key(target.address), target.port)
        first = endpoints.setdefault(endpoint_key, entry)
        if first is not entry:
            problems.add(
                entry.where("address"),
                f"duplicate host: {show(target.address)} port {target.port} is also {first.where('address')}",
            )


def finish(
    path: str,
    entries: Iterator[Entry],
    defaults: Defaults,
    problems: Problems,
    warnings: list[str],
    *,
    allow_empty: bool = False,
) -> Inventory:
    built: list[tuple[Entry, Target]] = []
    for entry in entries:
        target = _build(entry, defaults, problems)
        if target is not None:
            built.append((entry, target))
    _check_duplicates(built, problems)
    if problems.items:
        raise InventoryError(problems.items)
    if not built and not allow_empty:
        raise InventoryError([f"{path}: the inventory lists no hosts"])
    return Inventory(path=path, targets=tuple(t for _, t in built), warnings=tuple(warnings))
