"""Parse export destinations (DEST): a file, syslog over UDP/TCP/TLS, or Splunk HEC over HTTPS."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from pydantic import SecretStr

from scanner.core.bounded import InputFileError, read_bounded
from scanner.core.errors import NattError
from scanner.core.models import Frozen
from scanner.core.sanitize import one_line

TOKEN_ENV = "NATT_AUDIT_HEC_TOKEN"  # noqa: S105 - the variable name, not a secret
# A token is 36 characters; anything beyond this is not a token file.
_TOKEN_FILE_LIMIT = 4096


class DestinationError(NattError, ValueError):
    """A DEST that cannot be used; the message never repeats a secret."""


class Kind(StrEnum):
    """Transport of a destination."""

    FILE = "file"
    SYSLOG_UDP = "syslog+udp"
    SYSLOG_TCP = "syslog+tcp"
    SYSLOG_TLS = "syslog+tls"
    HEC = "hec+https"


SYSLOG_KINDS = (Kind.SYSLOG_UDP, Kind.SYSLOG_TCP, Kind.SYSLOG_TLS)


class Destination(Frozen):
    """One place findings are delivered to. Holds no secret: the HEC token is read at send time."""

    kind: Kind
    text: str  # the DEST as given, for display and as the identity of its acknowledgement state
    path: str | None = None
    host: str | None = None
    port: int | None = None
    ca_file: str | None = None
    token_file: str | None = None
    payload: str = "cef"  # syslog MSG: one CEF line ("cef") or one JSON finding ("json")
    facility: int = 13  # RFC 5424 facility 13: log audit
    max_size: int = 2048  # UDP datagram cap (RFC 5426: receivers should accept 2048 octets)
    timeout: float = 10.0
    ack: bool = False
    index: str | None = None
    hec_path: str = "/services/collector/event"
    retries: int = 5
    batch_bytes: int = 1_000_000  # HEC batches stay at or below 1 MB
    backoff_cap: float = 30.0

    @property
    def key(self) -> str:
        """Return a short stable name for this destination's state folder."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:20]

    @property
    def is_network(self) -> bool:
        """Return whether findings go over the network (through the spool)."""
        return self.kind is not Kind.FILE


# --- query options: one table drives parsing, defaults and every error message -----------------


@dataclass(frozen=True)
class OptionSpec:
    """One query option: the Destination field it sets and how its text is read."""

    field: str | None  # None for a secret: refused whatever the kind
    read: Callable[[str, str], object] = lambda _name, text: text  # (name, text) -> value, or DestinationError
    required: bool = False
    secret: bool = False

    @property
    def default(self) -> object:
        """Return the value the Destination gets when the option is not given."""
        return None if self.field is None else Destination.model_fields[self.field].default


def _int(low: int, high: int) -> Callable[[str, str], object]:
    def read(name: str, text: str) -> object:
        if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
            raise DestinationError(f"option {name} must be an integer from {low} to {high}")
        return int(text)

    return read


def _float(low: float, high: float) -> Callable[[str, str], object]:
    def read(name: str, text: str) -> object:
        try:
            number = float(text)
        except ValueError:
            raise DestinationError(f"option {name} must be a number") from None
        if not low <= number <= high:  # also refuses nan
            raise DestinationError(f"option {name} must be between {low} and {high}")
        return number

    return read


def _choice(choices: Mapping[str, object], wording: str) -> Callable[[str, str], object]:
    def read(name: str, text: str) -> object:
        if text not in choices:
            raise DestinationError(f"option {name} is {wording}")
        return choices[text]

    return read


def _http_path(name: str, text: str) -> object:
    if not text.startswith("/"):
        raise DestinationError(f"option {name} must start with /")
    return text


_SECRET = OptionSpec(field=None, secret=True)
_CA = OptionSpec("ca_file")
_FORMAT = OptionSpec("payload", _choice({"cef": "cef", "json": "json"}, "cef or json"))
_FACILITY = OptionSpec("facility", _int(0, 23))  # RFC 5424 section 6.2.1
_TIMEOUT = OptionSpec("timeout", _float(0.1, 600))
_RETRIES = OptionSpec("retries", _int(1, 100))
_BACKOFF_CAP = OptionSpec("backoff_cap", _float(0.0, 3600))
_SYSLOG = {"format": _FORMAT, "facility": _FACILITY}
_STREAM = {"timeout": _TIMEOUT, "retries": _RETRIES, "backoff_cap": _BACKOFF_CAP}

# Options each kind accepts; anything else is refused so a typo is never silently ignored.
OPTIONS: dict[Kind, dict[str, OptionSpec]] = {
    Kind.FILE: {},
    Kind.SYSLOG_UDP: {**_SYSLOG, "max_size": OptionSpec("max_size", _int(480, 65000))},  # RFC 5426 section 3.2
    Kind.SYSLOG_TCP: {**_SYSLOG, **_STREAM},
    Kind.SYSLOG_TLS: {**_SYSLOG, **_STREAM, "ca": _CA},
    Kind.HEC: {
        **_STREAM,
        "ca": _CA,
        "token_file": OptionSpec("token_file"),
        "ack": OptionSpec("ack", _choice({"1": True, "true": True, "0": False, "false": False}, "1 or 0")),
        "index": OptionSpec("index"),
        "path": OptionSpec("hec_path", _http_path),
        "batch_bytes": OptionSpec("batch_bytes", _int(1024, 1_000_000)),
    },
}
# Never accepted on the command line, whatever the kind: they would land in shell history and ps.
SECRET_OPTIONS: dict[str, OptionSpec] = {name: _SECRET for name in ("token", "password", "auth", "key")}


def read_options(
    kind: Kind,
    query: str,
    table: Mapping[Kind, Mapping[str, OptionSpec]] = OPTIONS,
    secrets: Mapping[str, OptionSpec] = SECRET_OPTIONS,
) -> dict[str, object]:
    """Return the Destination fields a query string sets, checked against `table[kind]`."""
    allowed = table[kind]
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:  # a field without "=" (strict_parsing)
        raise DestinationError("options are NAME=VALUE pairs joined by &") from None
    given: dict[str, tuple[OptionSpec, str]] = {}
    for name, text in pairs:
        spec = secrets.get(name) or allowed.get(name)
        if spec is not None and spec.secret:
            raise DestinationError(
                f"option {name} is not accepted: secrets never go on the command line; "
                f"set {TOKEN_ENV} or use ?token_file=PATH"
            )
        if spec is None:
            raise DestinationError(_not_allowed(kind, name, table))
        if name in given:
            raise DestinationError(f"option {name} given twice")
        given[name] = (spec, text)
    missing = [name for name, spec in allowed.items() if spec.required and name not in given]
    if missing:
        raise DestinationError(f"{kind.value}:// needs option {', '.join(missing)}")
    fields: dict[str, object] = {}
    for name, (spec, text) in given.items():
        if spec.field is None:  # pragma: no cover - a secret is refused above
            continue
        try:
            fields[spec.field] = spec.read(name, text)
        except DestinationError as exc:
            default = spec.default
            shown = str(int(default)) if isinstance(default, bool) else default  # as it is written: ack=0
            raise DestinationError(str(exc) if default is None else f"{exc} (default {shown})") from None
    return fields


def _not_allowed(kind: Kind, name: str, table: Mapping[Kind, Mapping[str, OptionSpec]]) -> str:
    known = ", ".join(sorted(table[kind])) or "none"
    elsewhere = [k.value + "://" for k, options in table.items() if k is not kind and name in options]
    if elsewhere:
        return f"option {name} does not apply to {kind.value}:// (only to {', '.join(elsewhere)}); known: {known}"
    return f"unknown option {one_line(name, 40)!r} for {kind.value}://; known: {known}"


def parse_destination(text: str) -> Destination:
    """Parse DEST: PATH, file:PATH, file:///PATH, syslog+udp|tcp|tls://HOST:PORT[?opts], hec+https://HOST:PORT[?opts]."""
    if not text or text != text.strip() or any(ch in text for ch in "\r\n\x00"):
        raise DestinationError("a destination is a non-empty path or URL without spaces around it")
    scheme = text.split("://", 1)[0].lower() if "://" in text else None
    if scheme is None:
        path = text[5:] if text.startswith("file:") else text
        if not path:
            raise DestinationError("file: needs a path")
        return Destination(kind=Kind.FILE, text=text, path=path)
    try:
        kind = Kind(scheme)
    except ValueError:
        known = ", ".join(k.value + "://" for k in Kind)
        raise DestinationError(
            f"unknown destination scheme {one_line(scheme, 40)!r}; use a path or {known}"
        ) from None
    parts = urlsplit(text)
    if kind is Kind.FILE:
        return _file_url(text, parts)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise DestinationError(
            "a destination URL must not carry credentials; the HEC token comes from "
            f"{TOKEN_ENV} or ?token_file=PATH"
        )
    if parts.path not in ("", "/") or parts.fragment:
        raise DestinationError("a destination URL is scheme://HOST:PORT[?options], without a path")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise DestinationError("the port must be a number from 1 to 65535") from None
    if not host or port is None or port == 0:
        raise DestinationError(f"{kind.value}:// needs HOST:PORT")
    fields = read_options(kind, parts.query)
    return Destination.model_validate({**fields, "kind": kind, "text": text, "host": host, "port": port})


def _file_url(text: str, parts: SplitResult) -> Destination:
    """Return the file destination of a file:///absolute/path URL (RFC 8089: no host, or localhost)."""
    if parts.netloc not in ("", "localhost"):
        raise DestinationError("a file:// URL names a local file: file:///absolute/path (no host)")
    if parts.query or parts.fragment:
        raise DestinationError(_not_allowed(Kind.FILE, parts.query.split("=", 1)[0] or "#", OPTIONS))
    path = unquote(parts.path)
    if not path.startswith("/") or "\x00" in path:
        raise DestinationError("a file:// URL needs an absolute path: file:///var/lib/natt-audit/findings.jsonl")
    return Destination(kind=Kind.FILE, text=text, path=path)


def load_token(destination: Destination, env: Mapping[str, str] | None = None) -> SecretStr:
    """Return the HEC token from ?token_file= or NATT_AUDIT_HEC_TOKEN; the error never shows it."""
    environ = os.environ if env is None else env
    if destination.token_file is not None:
        path = Path(destination.token_file)
        try:
            # bounded, a pipe allowed within a timeout, a device refused (scanner/core/bounded.py)
            data = read_bounded(path, _TOKEN_FILE_LIMIT, pipes=True)
        except InputFileError as exc:
            if exc.too_large:
                raise DestinationError(f"the HEC token file {one_line(str(path))} is too large to be a token") from None
            raise DestinationError(f"cannot read the HEC token file {one_line(str(path))}: {exc.reason}") from None
        try:
            token = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise DestinationError(f"the HEC token file {one_line(str(path))} is not UTF-8 text") from None
    else:
        token = environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise DestinationError(f"no HEC token: set {TOKEN_ENV} or give ?token_file=PATH")
    if any(ord(ch) < 33 or ord(ch) > 126 for ch in token):
        raise DestinationError("the HEC token holds characters an HTTP header cannot carry")
    return SecretStr(token)
