"""Loopback servers for failures the lab does not offer: raw HTTP(S) replies, TLS with bad certificates.

`RawServer(handler, tls=...)` accepts on 127.0.0.1 and runs `handler(RawConn)` per connection in a
daemon thread. `winrm_handler(...)` answers like a WinRM HTTPS listener with Basic auth (plain SOAP
over TLS, docs/domain.md#message-encryption), so a test can replace exactly one reply with a hostile one and reach
every parsing stage without NTLM message encryption. Certificates come from `tests.peers.pki`.

For peers scripted at the socket level, `serve(handler)` runs `handler(socket)` on the same server
and yields the port, and `read_request(socket)` reads one request as raw (head, body) bytes.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from scanner.core.models import AuthMethod, Credentials, Scheme, Target
from tests.peers.pki import HOSTNAME

STDREGPROV = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/default/StdRegProv"
NS = (
    'xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
    'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
    'xmlns:n="http://schemas.xmlsoap.org/ws/2004/09/enumeration" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
)
_MSGID = re.compile(rb"<a:MessageID>(?:uuid:)?([^<]+)</a:MessageID>")
_ACTION = re.compile(rb"<a:Action[^>]*>([^<]+)</a:Action>")


@dataclass
class Request:
    """One HTTP request as received."""

    line: str
    headers: dict[str, str]
    body: bytes

    @property
    def message_id(self) -> str:
        """Return the request's a:MessageID without the uuid: prefix ('' if none)."""
        m = _MSGID.search(self.body)
        return m.group(1).decode() if m else ""

    @property
    def action(self) -> str:
        """Return the request's a:Action ('' if none)."""
        m = _ACTION.search(self.body)
        return m.group(1).decode() if m else ""


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """Split a request head into its request line and its headers (lower-case names)."""
    line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for item in lines:
        name, _, value = item.partition(":")
        headers[name.strip().lower()] = value.strip()
    return line, headers


def _receive(sock: socket.socket, buf: bytes) -> tuple[bytes, bytes, bytes] | None:
    """Read one request after the bytes in `buf`: (head, body, what follows); None when the peer closed."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = int(_parse_head(head)[1].get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        rest += chunk
    return head, rest[:length], rest[length:]


class RawConn:
    """One accepted connection: read HTTP requests, write raw bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""

    def read_request(self) -> Request | None:
        """Read one request (Content-Length bodies only); None when the peer closed."""
        got = _receive(self.sock, self._buf)
        if got is None:
            return None
        head, body, self._buf = got
        line, headers = _parse_head(head)
        return Request(line, headers, body)

    def send(self, data: bytes) -> None:
        """Send bytes."""
        self.sock.sendall(data)

    def reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0)."""
        raw = self.sock
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        raw.close()


Handler = Callable[[RawConn], None]


@dataclass
class RawServer:
    """A threaded loopback TCP (or TLS) server; records what arrives."""

    handler: Handler
    tls: ssl.SSLContext | None = None
    port: int = 0
    accepted: int = 0
    first_bytes: list[bytes] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> RawServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.settimeout(0.2)
        self._sock = sock
        self.port = sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(60)
        try:
            with contextlib.suppress(OSError):
                self.first_bytes.append(conn.recv(16, socket.MSG_PEEK))
            sock: socket.socket = conn
            if self.tls is not None:
                sock = self.tls.wrap_socket(conn, server_side=True)
            raw = RawConn(sock)
            orig = raw.read_request

            def recording() -> Request | None:
                req = orig()
                if req is not None:
                    self.requests.append(req)
                return req

            raw.read_request = recording  # type: ignore[method-assign]
            self.handler(raw)
        except (OSError, ValueError):
            pass  # the client went away or refused our certificate: that is the test's business
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def target(self, name: str = HOSTNAME, scheme: Scheme = Scheme.HTTPS) -> Target:
        """Return a Target for this server (Basic over HTTPS unless told otherwise)."""
        transport = AuthMethod.BASIC if scheme is Scheme.HTTPS else AuthMethod.NTLM
        return Target(name=name, address="127.0.0.1", port=self.port, scheme=scheme, transport=transport)


CREDENTIALS = Credentials(username="LAB\\auditor", password="Lab-Passw0rd!")  # type: ignore[arg-type]


def read_request(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read one request from a plain socket as (head, body) bytes; (b"", b"") when the peer closed."""
    got = _receive(sock, b"")
    return (b"", b"") if got is None else (got[0], got[1])


@contextlib.contextmanager
def serve(handler: Callable[[socket.socket], None]) -> Iterator[int]:
    """Run `handler(sock)` on the plain socket of every connection to a fresh RawServer; yield its port."""
    with RawServer(lambda conn: handler(conn.sock)) as server:
        yield server.port


# ---- HTTP / SOAP building blocks ----------------------------------------------------------------


def http(
    status: int, body: bytes, *, reason: str = "X", ctype: str = "application/soap+xml;charset=UTF-8", extra: str = ""
) -> bytes:
    """Return a complete HTTP/1.1 response with Content-Length."""
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def envelope(relates_to: str | None, body: str, *, header_extra: str = "") -> bytes:
    """Return a SOAP 1.2 envelope in Windows' shape; RelatesTo echoes `relates_to` when given."""
    rel = f"<a:RelatesTo>uuid:{relates_to}</a:RelatesTo>" if relates_to is not None else ""
    return (
        f"<s:Envelope {NS}><s:Header><a:Action>x</a:Action><a:MessageID>uuid:0</a:MessageID>{rel}"
        f"{header_extra}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def os_body(caption: str = "Microsoft Windows 10 Pro", version: str = "10.0.19045") -> str:
    """Return an EnumerateResponse body holding a Win32_OperatingSystem XmlFragment."""
    return (
        "<n:EnumerateResponse><n:EnumerationContext></n:EnumerationContext><w:Items><w:XmlFragment>"
        f"<BuildNumber>19045</BuildNumber><Caption>{caption}</Caption>"
        f"<ServicePackMajorVersion>0</ServicePackMajorVersion><Version>{version}</Version>"
        "</w:XmlFragment></w:Items><w:EndOfSequence/></n:EnumerateResponse>"
    )


def dword_body(return_value: int = 1, value: int | None = None) -> str:
    """Return a GetDWORDValue_OUTPUT body."""
    inner = f"<p:uValue>{value}</p:uValue>" if value is not None else ""
    return (
        f'<p:GetDWORDValue_OUTPUT xmlns:p="{STDREGPROV}">{inner}'
        f"<p:ReturnValue>{return_value}</p:ReturnValue></p:GetDWORDValue_OUTPUT>"
    )


def fault_body(code: str, text: str = "fault") -> str:
    """Return an s:Fault body with a WSManFault of `code` (any text)."""
    return (
        "<s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code><s:Reason>"
        f'<s:Text xml:lang="en-US">{text}</s:Text></s:Reason><s:Detail>'
        f'<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="{code}" '
        f'Machine="x"><f:Message>{text}</f:Message></f:WSManFault></s:Detail></s:Fault>'
    )


def normal_reply(req: Request, *, caption: str = "Microsoft Windows 10 Pro") -> bytes:
    """Answer a request as a healthy Windows 10 host without the NAT-T value would."""
    if req.action.endswith("/Enumerate"):
        return http(200, envelope(req.message_id, os_body(caption)))
    return http(200, envelope(req.message_id, dword_body(1)))


Reply = Callable[[Request, int], bytes | None]  # (request, index on this server) -> bytes, or None: hang


def winrm_handler(reply: Reply, counter: list[int] | None = None) -> Handler:
    """Return a handler answering each request with `reply(request, n)` (n counts from 0 per server)."""
    count = counter if counter is not None else [0]

    def handle(conn: RawConn) -> None:
        while True:
            req = conn.read_request()
            if req is None:
                return
            n = count[0]
            count[0] += 1
            data = reply(req, n)
            if data is None:
                time.sleep(60)
                return
            conn.send(data)

    return handle


def scripted(*steps: Callable[[RawConn], None]) -> Handler:
    """Return a handler that runs each step on the connection in turn."""

    def handle(conn: RawConn) -> None:
        for step in steps:
            step(conn)

    return handle


@contextlib.contextmanager
def blackholed_port() -> Iterator[int]:
    """Yield a loopback port whose SYNs are dropped: a listener with its accept queue full, never accepting.

    Linux drops a SYN when the listen queue is full (tcp_abort_on_overflow=0, the default), so the
    client's connect() sees no answer at all, like a firewall DROP rule; and it needs no iptables.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(8):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.1)
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.settimeout(0.3)
    try:
        probe.connect(("127.0.0.1", port))
        raise AssertionError("the accept queue did not fill: SYNs are not dropped")
    except TimeoutError:
        pass
    finally:
        probe.close()
    try:
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()
