"""Read an inventory of hosts (YAML, CSV or text), validating every entry and rewriting nothing.

Formats and rules are documented in docs/inventory.md. Parsing never resolves or connects to
anything: CIDR ranges are expanded arithmetically with `ipaddress`.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from scanner.core import yamlfile
from scanner.core.errors import NattError
from scanner.core.models import AuthMethod, Frozen, Scheme, Target
from scanner.core.sanitize import has_unsafe

Format = Literal["yaml", "csv", "text"]
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_FILE_BYTES = 64 * 1024 * 1024  # a million text lines is ~30 MB; anything bigger is not an inventory
MAX_YAML_BYTES = 8 * 1024 * 1024  # pure-Python YAML parses ~0.3 MB/s; 8 MB (~85,000 hosts) stays bounded
MAX_CIDR_ADDRESSES = 65536  # /16 for IPv4, /112 for IPv6: bigger ranges are almost always a typo
MAX_SHOWN_PROBLEMS = 20
_MAX_KEPT_PROBLEMS = 10_000  # bounded memory for a file that is wrong on every line
HTTP_PORT, HTTPS_PORT = 5985, 5986  # WinRM listener defaults (docs/domain.md#ports-and-rights)

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/")
_PORT = re.compile(r"[1-9][0-9]{0,4}", re.ASCII)
_BRACKETED = re.compile(r"\[([^\[\]]*)\](?::(.*))?", re.DOTALL)
_WHERE = re.compile(r":([0-9]+)(?::([0-9]+))?\Z")
_CSV_COLUMNS = ("name", "address", "port", "scheme", "transport", "group")
_TAG_PREFIX = "tag:"


class InventoryError(NattError):
    """An unusable inventory; str() lists "path:line: message", one problem per line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        shown = list(self.problems[:MAX_SHOWN_PROBLEMS])
        if len(self.problems) > MAX_SHOWN_PROBLEMS:
            shown.append(f"... and {len(self.problems) - MAX_SHOWN_PROBLEMS} more problems")
        super().__init__("\n".join(shown))


class Inventory(Frozen):
    """The validated hosts of one inventory file, in file order."""

    path: str
    targets: tuple[Target, ...]
    warnings: tuple[str, ...] = ()


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
    if "://" in value or _SCHEME.match(value):
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


def _fixed(where: str) -> Callable[[str], str]:
    """Return a locator that names the same place for every field (text and CSV entries)."""
    return lambda _field: where


def _address_key(address: str) -> str:
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return address.rstrip(".").lower()


def _text_problem(value: str) -> str | None:
    if value == "":
        return "is empty"
    if has_unsafe(value):
        return "contains control or invisible characters"
    return None


@dataclass
class _Entry:
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
    ip: bool = False  # produced by CIDR expansion or an IP literal already checked


class _Problems:
    """Collects problems across the file so one error lists them all, in line order."""

    def __init__(self) -> None:
        self._items: list[tuple[int, int, str]] = []

    def add(self, where: str, message: str) -> None:
        if len(self._items) < _MAX_KEPT_PROBLEMS:
            match = _WHERE.search(where)
            line, column = (int(match[1]), int(match[2] or 0)) if match else (0, 0)
            self._items.append((line, column, f"{where}: {message}"))

    @property
    def items(self) -> list[str]:
        return [text for _, _, text in sorted(self._items, key=lambda item: item[:2])]


@dataclass(frozen=True)
class _Defaults:
    port: int
    scheme: Scheme
    transport: AuthMethod


def _port_for(scheme: Scheme, default_port: int) -> int:
    # An untouched HTTP default means "the scheme's standard WinRM port".
    if scheme is Scheme.HTTPS and default_port == HTTP_PORT:
        return HTTPS_PORT
    return default_port


def _parse_port(text: str) -> int | None:
    if _PORT.fullmatch(text) and int(text) <= 65535:
        return int(text)
    return None


def _build(entry: _Entry, defaults: _Defaults, problems: _Problems) -> Target | None:
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
    port: int | None
    if entry.port is None:
        port = _port_for(scheme or Scheme.HTTP, defaults.port)
    elif isinstance(entry.port, int):
        port = entry.port if 1 <= entry.port <= 65535 else None
    else:
        port = _parse_port(entry.port)
    if port is None:
        written = show(entry.port) if isinstance(entry.port, str) else str(entry.port)
        problems.add(entry.where("port"), f"port {written} must be an integer 1..65535")
        ok = False
    if transport is AuthMethod.BASIC and scheme is Scheme.HTTP:
        # Basic over plain HTTP sends the password in clear (docs/domain.md#message-encryption): refused at load.
        message = "transport basic requires scheme https (Basic over HTTP is refused)"
        problems.add(entry.where("transport"), message)
        ok = False
    for key, value in entry.tags.items():
        why = _text_problem(key) or _text_problem(value)
        if why:
            problems.add(entry.where("tags"), f"tag {show(key)} {why}")
            ok = False
    if entry.group is not None:
        why = _text_problem(entry.group)
        if why:
            problems.add(entry.where("group"), f"group {show(entry.group)} {why}")
            ok = False
    if not ok or port is None or scheme is None or transport is None:
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
    )


def _check_duplicates(built: list[tuple[_Entry, Target]], problems: _Problems) -> None:
    names: dict[str, _Entry] = {}
    endpoints: dict[tuple[str, int], _Entry] = {}
    for entry, target in built:
        name_key = target.name.rstrip(".").lower()
        first = names.setdefault(name_key, entry)
        if first is not entry:
            problems.add(
                entry.where("name"),
                f"duplicate host {show(target.name)} (same name as {first.where('name')})",
            )
            continue
        endpoint_key = (_address_key(target.address), target.port)
        first = endpoints.setdefault(endpoint_key, entry)
        if first is not entry:
            problems.add(
                entry.where("address"),
                f"duplicate host: {show(target.address)} port {target.port} is also {first.where('address')}",
            )


def _finish(
    path: str, entries: Iterator[_Entry], defaults: _Defaults, problems: _Problems, warnings: list[str]
) -> Inventory:
    built: list[tuple[_Entry, Target]] = []
    for entry in entries:
        target = _build(entry, defaults, problems)
        if target is not None:
            built.append((entry, target))
    _check_duplicates(built, problems)
    if problems.items:
        raise InventoryError(problems.items)
    if not built:
        raise InventoryError([f"{path}: the inventory lists no hosts"])
    return Inventory(path=path, targets=tuple(t for _, t in built), warnings=tuple(warnings))


# --- text -------------------------------------------------------------------------------------


def _expand(
    network: _Network,
    spec: str,
    port: str | None,
    source: str,
    warnings: list[str],
) -> Iterator[_Entry]:
    # IPv4: network and broadcast excluded below /31 (RFC 3021); IPv6: the subnet-router anycast
    # address (all-zero host part) excluded below /127 (RFC 4291 section 2.6.1). Arithmetic only.
    hosts = list(network.hosts())
    warnings.append(f"{source}: {spec} expanded to {len(hosts)} addresses")
    for ip in hosts:
        yield _Entry(source=source, where=_fixed(source), name=str(ip), port=port, ip=True)


def _network(text: str, where: str, problems: _Problems) -> _Network | None:
    base, _, prefix = text.partition("/")
    try:
        ipaddress.ip_address(base)
    except ValueError:
        problems.add(where, f"{show(text)} contains a path separator; give a host, IP address or CIDR range")
        return None
    if not _PORT.fullmatch(prefix) and prefix != "0":
        problems.add(where, f"CIDR range {show(text)} needs a numeric prefix length")
        return None
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        problems.add(where, f"CIDR range {show(text)} is invalid: {exc}")
        return None
    if network.num_addresses > MAX_CIDR_ADDRESSES:
        problems.add(
            where,
            f"CIDR range {show(text)} has {network.num_addresses} addresses; the limit is "
            f"{MAX_CIDR_ADDRESSES} (/16 for IPv4, /112 for IPv6): split it into smaller ranges",
        )
        return None
    return network


def _text_line(token: str, source: str, problems: _Problems, warnings: list[str]) -> Iterator[_Entry]:
    """Turn one non-comment text line into entries: host, host:port, [v6]:port, v6, CIDR."""
    if _text_problem(token):
        problems.add(source, f"entry {show(token)} contains control or invisible characters")
        return
    for marker, why in (
        (any(c.isspace() for c in token), "contains whitespace (one host per line)"),
        ("," in token, "contains a comma (one host per line)"),
        ("://" in token or bool(_SCHEME.match(token)), "has a URL scheme; give host or host:port only"),
        ("@" in token, "contains '@' (user info); credentials never go in the inventory"),
    ):
        if marker:
            problems.add(source, f"entry {show(token)} {why}")
            return
    host: str
    port: str | None = None
    if token.startswith("["):
        match = _BRACKETED.fullmatch(token)
        if not match:
            problems.add(source, f"entry {show(token)} is not [IPv6-address] or [IPv6-address]:port")
            return
        host, port = match.group(1), match.group(2)
        if ":" not in host:
            problems.add(source, f"entry {show(token)}: brackets are only for IPv6 addresses")
            return
    elif token.count(":") >= 2:
        host = token  # a bare IPv6 literal: no port, write [address]:port for one
    else:
        host, sep, rest = token.partition(":")
        port = rest if sep else None
    if port is not None and _parse_port(port) is None:
        problems.add(source, f"port {show(port)} must be an integer 1..65535")
        return
    if "/" in host and not host.startswith("/"):
        network = _network(host, source, problems)
        if network is not None:
            yield from _expand(network, host, port, source, warnings)
        return
    yield _Entry(source=source, where=_fixed(source), name=host, port=port)


def _text_entries(
    text: str, path: str, problems: _Problems, warnings: list[str], max_hosts: int
) -> Iterator[_Entry]:
    count = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        token = line.split("#", 1)[0].strip()
        if not token:
            continue
        for entry in _text_line(token, f"{path}:{number}", problems, warnings):
            count += 1
            if count > max_hosts:
                problems.add(f"{path}:{number}", f"more than {max_hosts} hosts; the limit is {max_hosts}")
                return
            yield entry


# --- CSV --------------------------------------------------------------------------------------


def _csv_entries(text: str, path: str, problems: _Problems, max_hosts: int) -> Iterator[_Entry]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        problems.add(f"{path}:1", f"malformed CSV header: {exc}")
        return
    if not header:
        problems.add(f"{path}:1", "a CSV inventory needs a header row (name, address, port, scheme, ...)")
        return
    columns: dict[str, int] = {}
    for index, column in enumerate(header):
        tag = column.startswith(_TAG_PREFIX) and _text_problem(column[len(_TAG_PREFIX) :]) is None
        known = column in _CSV_COLUMNS or tag
        if not known:
            problems.add(
                f"{path}:1",
                f"unknown column {show(column)} (known: {', '.join(_CSV_COLUMNS)}, tag:<name>)",
            )
        elif column in columns:
            problems.add(f"{path}:1", f"column {show(column)} appears twice")
        columns[column] = index
    if "name" not in columns:
        problems.add(f"{path}:1", "the header has no 'name' column")
    if problems.items:
        return
    tags = {c: i for c, i in columns.items() if c.startswith(_TAG_PREFIX)}
    count = 0
    while True:
        start = reader.line_num + 1
        source = f"{path}:{start}"
        try:
            row = next(reader, None)
        except csv.Error as exc:
            problems.add(source, f"malformed CSV: {exc}")
            return
        if row is None:
            return
        if all(cell == "" for cell in row):
            continue
        if len(row) != len(header):
            problems.add(source, f"row has {len(row)} fields, the header has {len(header)}")
            continue
        count += 1
        if count > max_hosts:
            problems.add(source, f"more than {max_hosts} hosts; the limit is {max_hosts}")
            return

        def cell(column: str, row: list[str] = row) -> str | None:
            index = columns.get(column)
            return None if index is None or row[index] == "" else row[index]

        yield _Entry(
            source=source,
            where=_fixed(source),
            name=cell("name") or "",
            address=cell("address"),
            port=cell("port"),
            scheme=cell("scheme"),
            transport=cell("transport"),
            group=cell("group"),
            tags={c[len(_TAG_PREFIX) :]: row[i] for c, i in tags.items() if row[i]},
        )


# --- YAML -------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _YamlDefaults(_Strict):
    port: StrictInt | None = None
    scheme: Scheme | None = None
    transport: AuthMethod | None = None
    tags: dict[StrictStr, StrictStr] = Field(default_factory=dict)


class _YamlHost(_Strict):
    name: StrictStr
    address: StrictStr | None = None
    port: StrictInt | None = None
    scheme: Scheme | None = None
    transport: AuthMethod | None = None
    tags: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    group: StrictStr | None = None


class _YamlFile(_Strict):
    defaults: _YamlDefaults = _YamlDefaults()
    hosts: list[Any]


def _pydantic_problems(
    doc: yamlfile.YamlDocument, exc: ValidationError, prefix: yamlfile.Loc, problems: _Problems
) -> None:
    for err in exc.errors(include_url=False):
        # pydantic appends union member names to loc; keep the real path parts (as yamlfile does)
        loc = tuple(
            p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))
        )
        full = (*prefix, *loc)
        field_name = ".".join(str(p) for p in full) or "(document)"
        problems.add(_yaml_where(doc, full), f"{field_name}: {err['msg']}")


def _yaml_where(doc: yamlfile.YamlDocument, loc: yamlfile.Loc) -> str:
    line, column = doc.where(loc)
    if line is None:
        return doc.path
    return f"{doc.path}:{line}" + (f":{column}" if column else "")


def _yaml_entries(
    doc: yamlfile.YamlDocument, problems: _Problems, defaults: _Defaults, max_hosts: int
) -> tuple[_Defaults, list[_Entry]]:
    if doc.data is None:
        return defaults, []
    if not isinstance(doc.data, dict):
        problems.add(
            _yaml_where(doc, ()), "the file must be a mapping with 'hosts' (and optional 'defaults')"
        )
        return defaults, []
    try:
        top = _YamlFile.model_validate(doc.data)
    except ValidationError as exc:
        _pydantic_problems(doc, exc, (), problems)
        return defaults, []
    if len(top.hosts) > max_hosts:
        problems.add(_yaml_where(doc, ("hosts",)), f"more than {max_hosts} hosts; the limit is {max_hosts}")
        return defaults, []
    file_defaults = _Defaults(
        port=top.defaults.port if top.defaults.port is not None else defaults.port,
        scheme=top.defaults.scheme or defaults.scheme,
        transport=top.defaults.transport or defaults.transport,
    )
    if top.defaults.port is not None and not 1 <= top.defaults.port <= 65535:
        message = f"port {top.defaults.port} must be an integer 1..65535"
        problems.add(_yaml_where(doc, ("defaults", "port")), message)
        return defaults, []
    entries: list[_Entry] = []
    for index, item in enumerate(top.hosts):
        try:
            host = _YamlHost.model_validate(item)
        except ValidationError as exc:
            _pydantic_problems(doc, exc, ("hosts", index), problems)
            continue

        def where(field: str, index: int = index) -> str:
            return _yaml_where(doc, ("hosts", index, field))

        line, _ = doc.where(("hosts", index))
        # An explicit defaults.port applies whatever the scheme; otherwise the scheme picks 5985/5986.
        port: int | None = host.port
        if port is None and top.defaults.port is not None:
            port = top.defaults.port
        entries.append(
            _Entry(
                source=f"{doc.path}:{line}",
                where=where,
                name=host.name,
                address=host.address,
                port=port,
                scheme=host.scheme,
                transport=host.transport,
                tags={**top.defaults.tags, **host.tags},
                group=host.group,
            )
        )
    return file_defaults, entries


# --- entry points -----------------------------------------------------------------------------


def detect_format(path: str | Path) -> Format:
    """Return the format implied by the file name: .yaml/.yml, .csv, anything else is text."""
    suffix = Path(path).suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".csv":
        return "csv"
    return "text"


def parse_inventory(
    text: str,
    path: str,
    *,
    fmt: Format,
    default_port: int = HTTP_PORT,
    default_scheme: Scheme = Scheme.HTTP,
    default_transport: AuthMethod = AuthMethod.NTLM,
    max_hosts: int = 1_000_000,
) -> Inventory:
    """Parse inventory text already read from `path`; raise InventoryError listing every problem."""
    problems = _Problems()
    warnings: list[str] = []
    defaults = _Defaults(port=default_port, scheme=default_scheme, transport=default_transport)
    entries: Iterator[_Entry]
    if fmt == "yaml":
        try:
            doc = yamlfile.load_text(text, path, max_bytes=MAX_YAML_BYTES)
        except yamlfile.FileError as exc:
            raise InventoryError([str(exc)]) from None
        defaults, listed = _yaml_entries(doc, problems, defaults, max_hosts)
        # The entries hold what they need; drop the parsed document (dicts for every host) before
        # the targets are built, so both are never in memory together (docs/performance.md).
        doc.data = None
        entries = iter(listed)
    elif fmt == "csv":
        entries = _csv_entries(text, path, problems, max_hosts)
    else:
        entries = _text_entries(text, path, problems, warnings, max_hosts)
    return _finish(path, entries, defaults, problems, warnings)


def load_inventory(
    path: str | Path,
    *,
    default_port: int = HTTP_PORT,
    default_scheme: Scheme = Scheme.HTTP,
    default_transport: AuthMethod = AuthMethod.NTLM,
    max_hosts: int = 1_000_000,
) -> Inventory:
    """Read and validate an inventory file; the format follows the file extension."""
    name = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InventoryError([f"{name}: cannot read the inventory: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise InventoryError([f"{name}: larger than {MAX_FILE_BYTES} bytes; this is not an inventory"])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InventoryError([f"{name}:{line}: not UTF-8 (byte {exc.start})"]) from None
    return parse_inventory(
        text,
        name,
        fmt=detect_format(path),
        default_port=default_port,
        default_scheme=default_scheme,
        default_transport=default_transport,
        max_hosts=max_hosts,
    )
