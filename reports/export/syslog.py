"""Syslog delivery: RFC 5424 messages, RFC 6587 octet counting on TCP, RFC 5425 TLS, RFC 5426 UDP."""

from __future__ import annotations

import contextlib
import random
import socket
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime

from reports.export.destinations import Destination, Kind
from reports.findings import Finding
from reports.formats import cef, jsonl
from scanner.core.results import Severity
from scanner.core.sanitize import one_line, syslog_msg
from scanner.core.sanitize import sd_param as sd_escape
from scanner.core.sanitize import syslog_header as header_token

APP_NAME = "natt-audit"
SD_ID = "natt@32473"  # private SD-ID: name@PEN, 32473 is the documentation PEN (RFC 5612)
# docs/siem.md#severity-scale -> syslog severity (RFC 5424 table 2).
SYSLOG_SEVERITY: dict[Severity, int] = {
    Severity.INFO: 6,
    Severity.LOW: 5,
    Severity.MEDIUM: 4,
    Severity.HIGH: 3,
    Severity.CRITICAL: 2,
}
MSGID_LIMIT = 32
HOSTNAME_LIMIT = 255


class SyslogError(Exception):
    """A syslog destination could not take the messages."""


def timestamp(rfc3339: str) -> str:
    """Return an RFC 5424 TIMESTAMP: UTC, `Z`, at most 6 fractional digits."""
    moment = datetime.fromisoformat(rfc3339.replace("z", "Z").replace("Z", "+00:00")).astimezone(UTC)
    text = moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def structured_data(finding: Finding) -> str:
    """Return the natt@32473 SD-ELEMENT carrying the identifiers of a finding."""
    params = (
        ("id", finding.event_uid),
        ("finding", finding.finding_uid),
        ("scan", finding.scan_id),
        ("rule", finding.rule_id),
        ("host", finding.host),
        ("status", finding.status.value),
        ("severity", finding.severity.value),
    )
    return "[" + SD_ID + "".join(f' {name}="{sd_escape(value)}"' for name, value in params) + "]"


def format_message(
    finding: Finding, *, hostname: str, facility: int = 13, payload: str = "cef", procid: str = "-"
) -> bytes:
    """Return one RFC 5424 message (no framing, no newline) whose MSG is the CEF or JSON finding."""
    pri = facility * 8 + SYSLOG_SEVERITY[finding.severity]
    body = cef.event(finding) if payload == "cef" else jsonl.line(finding)
    line = (
        f"<{pri}>1 {timestamp(finding.time)} {header_token(hostname, HOSTNAME_LIMIT)} {APP_NAME} "
        f"{header_token(procid, 128)} {header_token(finding.rule_id, MSGID_LIMIT)} "
        f"{structured_data(finding)} {body}"
    )
    return syslog_msg(line).encode("utf-8")


def octet_frame(message: bytes) -> bytes:
    """Frame a message for TCP/TLS with RFC 6587 octet counting: `LEN SP MSG`."""
    return str(len(message)).encode("ascii") + b" " + message


def fit_datagram(message: bytes, limit: int) -> bytes:
    """Cut a message to `limit` bytes at a UTF-8 boundary, never inside a CEF escape."""
    if len(message) <= limit:
        return message
    cut = message[:limit]
    while cut and (cut[-1] & 0xC0) == 0x80:  # drop a partial UTF-8 sequence
        cut = cut[:-1]
    if cut and cut[-1] >= 0xC0:
        cut = cut[:-1]
    trailing = len(cut) - len(cut.rstrip(b"\\"))
    if trailing % 2:  # an odd run of backslashes ends in half an escape
        cut = cut[:-1]
    return cut


def full_jitter(attempt: int, base: float, cap: float) -> float:
    """Return a backoff delay: uniform in [0, min(cap, base * 2**attempt)] ("full jitter")."""
    return random.uniform(0.0, min(cap, base * 2**attempt))  # noqa: S311 - jitter, not a secret


def local_hostname() -> str:
    """Return this machine's name for the HOSTNAME field."""
    return socket.gethostname() or "-"


class SyslogSender:
    """Send findings to one syslog destination; confirms TCP/TLS delivery by an orderly close."""

    def __init__(
        self,
        destination: Destination,
        *,
        hostname: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        backoff_base: float = 0.5,
    ) -> None:
        if destination.kind not in (Kind.SYSLOG_UDP, Kind.SYSLOG_TCP, Kind.SYSLOG_TLS):
            raise ValueError("not a syslog destination")
        self.destination = destination
        self.hostname = hostname or local_hostname()
        self._sleep = sleep
        self._backoff_base = backoff_base

    def messages(self, findings: list[Finding]) -> list[bytes]:
        """Return the RFC 5424 message of each finding."""
        d = self.destination
        return [
            format_message(f, hostname=self.hostname, facility=d.facility, payload=d.payload)
            for f in findings
        ]

    def deliver(self, findings: list[Finding], on_acked: Callable[[list[str]], None]) -> str | None:
        """Send every finding; call `on_acked` with delivered event_uids; return an error or None."""
        if not findings:
            return None
        messages = self.messages(findings)
        uids = [f.event_uid for f in findings]
        if self.destination.kind is Kind.SYSLOG_UDP:
            return self._udp(messages, uids, on_acked)
        error = ""
        for attempt in range(self.destination.retries):
            try:
                self._stream(messages)
            except (OSError, SyslogError) as exc:  # ssl.SSLError is an OSError
                error = one_line(f"{type(exc).__name__}: {exc}", 300)
                if attempt + 1 < self.destination.retries:
                    self._sleep(full_jitter(attempt, self._backoff_base, self.destination.backoff_cap))
                continue
            on_acked(uids)
            return None
        return f"{self.destination.text}: {error}"

    def _connect(self) -> socket.socket:
        d = self.destination
        assert d.host is not None and d.port is not None
        sock = socket.create_connection((d.host, d.port), timeout=d.timeout)
        if d.kind is not Kind.SYSLOG_TLS:
            return sock
        # RFC 5425: TLS with server certificate and name verification on, always.
        context = ssl.create_default_context(cafile=d.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            return context.wrap_socket(sock, server_hostname=d.host)
        except OSError:
            sock.close()
            raise

    def _stream(self, messages: list[bytes]) -> None:
        sock = self._connect()
        try:
            data = b"".join(octet_frame(m) for m in messages)
            sock.sendall(data)
            if isinstance(sock, ssl.SSLSocket):
                with contextlib.suppress(ssl.SSLError, OSError):
                    sock = sock.unwrap()  # send close_notify; the peer may just close instead
            # Half-close and wait for the receiver to close: it has then read every frame.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + self.destination.timeout
            while True:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    raise SyslogError(
                        "the receiver did not close the connection: delivery unconfirmed"
                    ) from None
                except ConnectionResetError:
                    break  # closed with unread close_notify data: it read our frames first
                if not chunk:
                    break
        finally:
            sock.close()

    def _udp(
        self, messages: list[bytes], uids: list[str], on_acked: Callable[[list[str]], None]
    ) -> str | None:
        d = self.destination
        assert d.host is not None and d.port is not None
        family = socket.AF_INET6 if ":" in d.host else socket.AF_INET
        sent: list[str] = []
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.settimeout(d.timeout)
                sock.connect((d.host, d.port))  # connected: ICMP port-unreachable surfaces as an error
                for message, uid in zip(messages, uids, strict=True):
                    sock.send(fit_datagram(message, d.max_size))
                    sent.append(uid)
        except OSError as exc:
            on_acked(sent)
            return f"{d.text}: {type(exc).__name__}: {one_line(str(exc), 200)}"
        on_acked(sent)  # UDP has no acknowledgement: sent is all it can know (RFC 5426)
        return None
