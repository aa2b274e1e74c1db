"""Parse export destinations (DEST): a file, syslog over UDP/TCP/TLS, or Splunk HEC over HTTPS."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from pydantic import SecretStr

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
# Query options each scheme accepts; anything else is refused so a typo is not silently ignored.
_OPTIONS: dict[Kind, frozenset[str]] = {
    Kind.SYSLOG_UDP: frozenset({"format", "facility", "max_size"}),
    Kind.SYSLOG_TCP: frozenset({"format", "facility", "timeout", "retries", "backoff_cap"}),
    Kind.SYSLOG_TLS: frozenset({"format", "facility", "timeout", "retries", "backoff_cap", "ca"}),
    Kind.HEC: frozenset(
        {"ca", "token_file", "ack", "index", "timeout", "retries", "path", "batch_bytes", "backoff_cap"}
    ),
}
_SECRET_OPTIONS = frozenset({"token", "password", "auth", "key"})


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


def _int(name: str, value: str, low: int, high: int) -> int:
    if not value.isdigit() or not low <= int(value) <= high:
        raise DestinationError(f"option {name} must be an integer from {low} to {high}")
    return int(value)


def _float(name: str, value: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise DestinationError(f"option {name} must be a number") from None
    if not low <= number <= high:
        raise DestinationError(f"option {name} must be between {low} and {high}")
    return number


def parse_destination(text: str) -> Destination:
    """Parse DEST: PATH, file:PATH, syslog+udp|tcp|tls://HOST:PORT[?opts], hec+https://HOST:PORT[?opts]."""
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
        known = ", ".join(k.value + "://" for k in Kind if k is not Kind.FILE)
        raise DestinationError(
            f"unknown destination scheme {one_line(scheme, 40)!r}; use a path or {known}"
        ) from None
    parts = urlsplit(text)
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
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)):
        if name in _SECRET_OPTIONS:
            raise DestinationError(
                f"option {name} is not accepted: secrets never go on the command line; "
                f"set {TOKEN_ENV} or use ?token_file=PATH"
            )
        if name not in _OPTIONS[kind]:
            raise DestinationError(
                f"unknown option {one_line(name, 40)!r} for {kind.value}://; "
                f"known: {', '.join(sorted(_OPTIONS[kind]))}"
            )
        if name in options:
            raise DestinationError(f"option {name} given twice")
        options[name] = value
    fields: dict[str, object] = {"kind": kind, "text": text, "host": host, "port": port}
    if "ca" in options:
        fields["ca_file"] = options["ca"]
    if "format" in options:
        if options["format"] not in ("cef", "json"):
            raise DestinationError("option format is cef or json")
        fields["payload"] = options["format"]
    if "facility" in options:
        fields["facility"] = _int("facility", options["facility"], 0, 23)
    if "max_size" in options:
        fields["max_size"] = _int("max_size", options["max_size"], 480, 65000)
    if "timeout" in options:
        fields["timeout"] = _float("timeout", options["timeout"], 0.1, 600)
    if "token_file" in options:
        fields["token_file"] = options["token_file"]
    if "ack" in options:
        if options["ack"] not in ("0", "1", "true", "false"):
            raise DestinationError("option ack is 1 or 0")
        fields["ack"] = options["ack"] in ("1", "true")
    if "index" in options:
        fields["index"] = options["index"]
    if "path" in options:
        if not options["path"].startswith("/"):
            raise DestinationError("option path must start with /")
        fields["hec_path"] = options["path"]
    if "retries" in options:
        fields["retries"] = _int("retries", options["retries"], 1, 100)
    if "batch_bytes" in options:
        fields["batch_bytes"] = _int("batch_bytes", options["batch_bytes"], 1024, 1_000_000)
    if "backoff_cap" in options:
        fields["backoff_cap"] = _float("backoff_cap", options["backoff_cap"], 0.0, 3600)
    return Destination.model_validate(fields)


def load_token(destination: Destination, env: Mapping[str, str] | None = None) -> SecretStr:
    """Return the HEC token from ?token_file= or NATT_AUDIT_HEC_TOKEN; the error never shows it."""
    environ = os.environ if env is None else env
    if destination.token_file is not None:
        path = Path(destination.token_file)
        try:
            with path.open("rb") as handle:
                data = handle.read(_TOKEN_FILE_LIMIT + 1)
        except OSError as exc:
            raise DestinationError(
                f"cannot read the HEC token file {one_line(str(path))}: {exc.strerror}"
            ) from None
        if len(data) > _TOKEN_FILE_LIMIT:
            raise DestinationError(f"the HEC token file {one_line(str(path))} is too large to be a token")
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
