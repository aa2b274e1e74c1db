"""The `ansible` source: hosts of an Ansible inventory, through `ansible-inventory --list`.

Ansible is run as a program (ansible-inventory(1)), never imported: anything `-i` accepts works
(INI, YAML, directories, dynamic inventory plugins). Its JSON output (`_meta.hostvars` and groups
with `hosts` and `children`, as the ansible-inventory docs describe) is read for the chosen group
and its child groups. Only the variables in `READ_VARS` are looked at; everything else, passwords
and vault values included, is dropped as the output is parsed and never kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, StrictFloat, StrictInt, StrictStr, model_validator

from scanner.core.models import AuthMethod, Scheme
from scanner.core.sanitize import one_line
from scanner.inputs.inventory.validate import show
from scanner.inputs.sources import (
    HostEntry,
    Provenance,
    SourceDefaults,
    SourceError,
    SourceKind,
    SourceResult,
    StrictConfig,
    apply_defaults,
    secret_key_in,
)

PROGRAM = "ansible-inventory"
EXTRA = "pip install 'natt-audit[ansible]'"
MAX_OUTPUT_BYTES = 256 * 1024 * 1024  # ~1 KB of JSON a host with its variables: far above any estate
MAX_STDERR_BYTES = 64 * 1024
WINRM_PORT = 5986  # the winrm connection plugin's default port
WINRM_HTTP_PORT = 5985
# The only host variables read (ansible winrm connection plugin options); all others are dropped.
READ_VARS = ("ansible_host", "ansible_port", "ansible_connection", "ansible_winrm_scheme", "ansible_winrm_transport")
WINRM_CONNECTIONS = frozenset({"winrm", "ansible.builtin.winrm"})
IMPLICIT_GROUPS = frozenset({"all", "ungrouped"})
GROUP_TAG_PREFIX = "ansible-group:"
GROUP_TAG_VALUE = "member"
# pywinrm transport names the winrm plugin passes through -> natt-audit's. "plaintext" and "ssl"
# are pywinrm's Basic over HTTP and over HTTPS; "certificate" (client certificates) is not supported.
TRANSPORTS: dict[str, AuthMethod | None] = {
    "ntlm": AuthMethod.NTLM,
    "kerberos": AuthMethod.KERBEROS,
    "credssp": AuthMethod.CREDSSP,
    "basic": AuthMethod.BASIC,
    "plaintext": AuthMethod.BASIC,
    "ssl": AuthMethod.BASIC,
    "certificate": None,
}
# key=value or key: value where the key names a secret, and vault blobs: masked in Ansible's stderr.
_SECRET_ASSIGNMENT = re.compile(r"(?i)([\w.-]*(?:pass|pwd|secret|token|vault|key)[\w.-]*\s*[=:]\s*)(\S+)")
_VAULT_BLOB = re.compile(r"\$ANSIBLE_VAULT;[^\s\"']*(?:\s+[0-9a-f]+)*")


class AnsibleSourceConfig(StrictConfig):
    """The `ansible` source as written in an inventory's `sources:` list."""

    type: Literal["ansible"] = "ansible"
    inventory: StrictStr = Field(min_length=1)  # anything `ansible-inventory -i` accepts
    group: StrictStr = Field(default="all", min_length=1)
    timeout: StrictInt | StrictFloat = Field(default=120, gt=0, le=3600)
    max_output_bytes: StrictInt = Field(default=MAX_OUTPUT_BYTES, gt=0)
    defaults: SourceDefaults = SourceDefaults()

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        key = secret_key_in(data)
        if key is not None:
            raise ValueError(
                f"{key!r} is refused: the ansible source reads no credentials; the scan's account comes "
                "from NATT_AUDIT_USERNAME/NATT_AUDIT_PASSWORD or --password-file (docs/inventory.md)"
            )
        return data


def redact(text: str) -> str:
    """Mask secret-looking assignments and vault blobs in Ansible's messages; make them one line."""
    text = _VAULT_BLOB.sub("$ANSIBLE_VAULT;***", text)
    return one_line(_SECRET_ASSIGNMENT.sub(lambda m: m.group(1) + "***", text), limit=2000)


def run_capped(argv: list[str], env: Mapping[str, str], timeout: float, limit: int, origin: str) -> bytes:
    """Run argv; return its stdout, raising SourceError past `timeout` s or `limit` bytes of output."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,  # a vault password prompt must fail, not wait
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            start_new_session=True,  # its own process group, so a timeout stops its children too
        )
    except OSError as exc:
        raise SourceError(origin, "tool_failed", f"cannot start {argv[0]}: {exc.strerror or exc}") from None
    if proc.stdout is None or proc.stderr is None:  # cannot happen with PIPE; keeps the types honest
        proc.kill()
        raise SourceError(origin, "tool_failed", f"cannot read the output of {argv[0]}")
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout
    failure: SourceError | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ, out)
        selector.register(proc.stderr, selectors.EVENT_READ, err)
        while selector.get_map() and failure is None:
            left = deadline - time.monotonic()
            if left <= 0:
                failure = SourceError(origin, "timeout", f"{PROGRAM} did not finish within {timeout} s")
                break
            for key, _ in selector.select(min(left, 1.0)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffer: bytearray = key.data
                buffer += chunk
                if buffer is out and len(out) > limit:
                    failure = SourceError(
                        origin, "output_too_large", f"{PROGRAM} wrote more than {limit} bytes; raise max_output_bytes"
                    )
                    break
                if buffer is err and len(err) > MAX_STDERR_BYTES:
                    del err[: len(err) - MAX_STDERR_BYTES]
    if failure is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    code = proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    if failure is not None:
        raise failure
    if code != 0:
        message = redact(err.decode("utf-8", "replace").strip()) or "no message"
        raise SourceError(origin, "tool_failed", f"{PROGRAM} exited {code}: {message}")
    return bytes(out)


def _walk(groups: Mapping[str, Any], start: str) -> Iterator[str]:
    """Yield `start` and every group below it once, depth first in the listed order."""
    seen: set[str] = set()
    stack = [start]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        yield name
        children = groups.get(name, {}).get("children") or []
        stack.extend(reversed([c for c in children if isinstance(c, str)]))


def _transport(value: object, host: str, problems: list[str]) -> AuthMethod | None:
    names = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else None
    if not names or not all(isinstance(n, str) for n in names):
        problems.append(f"host {show(host)}: ansible_winrm_transport {show(str(value))} is not a name or a list")
        return None
    chosen: AuthMethod | None = None
    for raw in names:
        name = raw.strip().lower()
        if name not in TRANSPORTS:
            known = ", ".join(TRANSPORTS)
            problems.append(f"host {show(host)}: ansible_winrm_transport {show(raw)} is unknown (known: {known})")
            return None
        if chosen is None:
            chosen = TRANSPORTS[name]
    if chosen is None:
        problems.append(
            f"host {show(host)}: ansible_winrm_transport {show(str(value))}: certificate authentication is not "
            "supported; natt-audit uses ntlm, kerberos, credssp or basic"
        )
    return chosen


class AnsibleSource:
    """Resolve the hosts of one Ansible inventory group to host entries."""

    def __init__(
        self,
        config: AnsibleSourceConfig,
        *,
        environ: Mapping[str, str] | None = None,
        base_dir: Path | None = None,
    ) -> None:
        self.config = config
        self._environ = dict(os.environ if environ is None else environ)
        inventory = Path(config.inventory).expanduser()
        if base_dir is not None and not inventory.is_absolute() and (base_dir / inventory).exists():
            inventory = base_dir / inventory
        self.inventory = str(inventory) if inventory.exists() else config.inventory
        self.origin = self.inventory

    def _program(self) -> str:
        found = shutil.which(PROGRAM, path=self._environ.get("PATH", os.defpath))
        if found is None:
            raise SourceError(
                self.origin,
                "missing_dependency",
                f"{PROGRAM} was not found on PATH; the ansible source needs ansible-core: {EXTRA}",
            )
        return found

    def listing(self) -> dict[str, Any]:
        """Run ansible-inventory --list and return its parsed JSON."""
        env = {
            **self._environ,
            "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",  # an inventory that does not parse is an error
            "ANSIBLE_NOCOLOR": "True",
            "ANSIBLE_FORCE_COLOR": "False",
        }
        argv = [self._program(), "-i", self.inventory, "--list"]
        raw = run_capped(argv, env, float(self.config.timeout), self.config.max_output_bytes, self.origin)
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SourceError(self.origin, "bad_output", f"{PROGRAM} --list did not print JSON: {exc}") from None
        if not isinstance(data, dict):
            raise SourceError(self.origin, "bad_output", f"{PROGRAM} --list printed no JSON object")
        return data

    def resolve(self) -> SourceResult:
        """List the inventory and return the chosen group's hosts (child groups included)."""
        data = self.listing()
        meta = data.pop("_meta", {}) or {}
        hostvars_all = meta.get("hostvars", {}) if isinstance(meta, dict) else {}
        groups: dict[str, Any] = {k: v for k, v in data.items() if isinstance(v, dict)}
        group = self.config.group
        if group not in groups:
            listed = ", ".join(sorted(groups)[:30]) or "none"
            raise SourceError(self.origin, "group_not_found", f"group {show(group)} is not in the inventory ({listed})")
        parents: dict[str, list[str]] = {}
        for name, body in groups.items():
            for child in body.get("children") or []:
                parents.setdefault(child, []).append(name)
        order: list[str] = []
        member_of: dict[str, set[str]] = {}
        for name in _walk(groups, group):
            for host in groups.get(name, {}).get("hosts") or []:
                if isinstance(host, str) and host not in member_of:
                    member_of[host] = set()
                    order.append(host)
        for name, body in groups.items():  # every group of a selected host, wherever it is
            for host in body.get("hosts") or []:
                if host in member_of:
                    member_of[host] |= set(self._ancestors(name, parents))
        problems: list[str] = []
        hosts: list[HostEntry] = []
        for host in order:
            given = hostvars_all.get(host) if isinstance(hostvars_all, dict) else None
            wanted = {k: given[k] for k in READ_VARS if isinstance(given, dict) and k in given}
            entry = self._entry(host, wanted, sorted(member_of[host] - IMPLICIT_GROUPS), problems)
            if entry is not None:
                problems.extend(f"host {show(host)}: {p}" for p in entry.problems())
                hosts.append(entry)
        del hostvars_all, meta, data  # the variables we did not read (secrets among them) go now
        if problems:
            raise SourceError(self.origin, "invalid_host", problems)
        return SourceResult(
            source=SourceKind.ANSIBLE,
            origin=self.origin,
            hosts=tuple(hosts),
            stats={"groups": len(groups), "hosts": len(hosts)},
        )

    @staticmethod
    def _ancestors(name: str, parents: Mapping[str, list[str]]) -> Iterator[str]:
        seen: set[str] = set()
        stack = [name]
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                yield current
                stack.extend(parents.get(current, ()))

    def _entry(self, host: str, given: Mapping[str, Any], groups: list[str], problems: list[str]) -> HostEntry | None:
        """Build one host entry from the allowed variables; record problems naming the host."""
        start = len(problems)
        address = given.get("ansible_host")
        if address is not None and not isinstance(address, str):
            problems.append(f"host {show(host)}: ansible_host must be a string")
            address = None
        winrm = given.get("ansible_connection") in WINRM_CONNECTIONS
        port: int | None = None
        if winrm:  # ansible_port is the SSH port for other connections
            raw_port = given.get("ansible_port", WINRM_PORT)
            if isinstance(raw_port, str) and raw_port.isdigit():
                raw_port = int(raw_port)
            if not isinstance(raw_port, int) or isinstance(raw_port, bool) or not 1 <= raw_port <= 65535:
                problems.append(f"host {show(host)}: ansible_port {show(str(raw_port))} must be an integer 1..65535")
            else:
                port = raw_port
        scheme: Scheme | None = None
        raw_scheme = given.get("ansible_winrm_scheme")
        if raw_scheme is not None:
            try:
                scheme = Scheme(raw_scheme)
            except ValueError:
                problems.append(
                    f"host {show(host)}: ansible_winrm_scheme {show(str(raw_scheme))} must be http or https"
                )
        elif port is not None:
            # The winrm plugin's rule: http when the port is 5985, https otherwise.
            scheme = Scheme.HTTP if port == WINRM_HTTP_PORT else Scheme.HTTPS
        transport = None
        if "ansible_winrm_transport" in given:
            transport = _transport(given["ansible_winrm_transport"], host, problems)
        if len(problems) > start:
            return None
        scheme_, transport_, port_ = apply_defaults(self.config.defaults, scheme=scheme, transport=transport, port=port)
        return HostEntry(
            name=host,
            address=address,
            port=port_,
            scheme=scheme_,
            transport=transport_,
            tags={GROUP_TAG_PREFIX + g: GROUP_TAG_VALUE for g in groups},
            site=self.config.defaults.site,
            provenance=Provenance(source=SourceKind.ANSIBLE, origin=self.origin, entry=host),
        )
