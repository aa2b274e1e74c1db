"""A minimal HTTP/1.1 client for one WinRM listener: one keep-alive connection, hard limits.

Why not requests/urllib3 (what pywinrm uses): they bound only the silence between reads, not the
wall clock, read whole bodies without a cap and take proxies from the environment
(docs/domain.md#client-limits). Here every blocking call (resolve, connect, TLS handshake, send, each recv) gets the
time left before the host's deadline, so a peer that trickles one byte every two seconds still
ends at the deadline; headers and bodies are capped before they are read; proxies are never used.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import ssl
import threading
import time
import warnings
from dataclasses import dataclass, field

from scanner.collect.wsman.errors import CollectError, ConnectionDropped, deadline_error
from scanner.core.models import Stage

MAX_HEADER_BYTES = 64 * 1024
MAX_CHUNK_LINE = 1024
_RECV_SIZE = 65536


class Deadline:
    """A wall-clock budget for one host; every blocking call asks it for the time left."""

    __slots__ = ("end",)

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        """Return the seconds left, or raise the deadline error when none are."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise deadline_error()
        return left

    def expired(self) -> bool:
        """Return whether the budget is spent."""
        return time.monotonic() >= self.end


def _is_ip_literal(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


AddrInfo = tuple[int, int, int, str, tuple[str, int] | tuple[str, int, int, int]]


def resolve(address: str, port: int, deadline: Deadline) -> list[AddrInfo]:
    """Resolve `address` within the deadline; IP literals skip the resolver entirely."""
    if _is_ip_literal(address):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]
    # getaddrinfo cannot be interrupted: run it in a daemon thread and stop waiting at the deadline.
    # A hung resolver then costs one parked thread, never a worker.
    result: list[list[AddrInfo]] = []
    failure: list[str] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
            result.append([info for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)])  # type: ignore[misc]
        except (OSError, UnicodeError) as exc:
            failure.append(str(exc) or type(exc).__name__)
        finally:
            done.set()

    threading.Thread(target=lookup, name="natt-dns", daemon=True).start()
    if not done.wait(deadline.remaining()):
        raise CollectError(Stage.CONNECT, "dns", f"name {address!r} did not resolve before the deadline")
    if failure or not result or not result[0]:
        detail = failure[0] if failure else "no IPv4/IPv6 address"
        raise CollectError(Stage.CONNECT, "dns", f"name {address!r} did not resolve: {detail}")
    return result[0]


def _socket_error(exc: OSError, deadline: Deadline, doing: str) -> CollectError:
    """Classify an OSError from a socket call into a stable reason."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CollectError(Stage.TLS, "tls_verify", f"certificate verification failed: {exc.verify_message}")
    if isinstance(exc, ssl.SSLError):
        return CollectError(Stage.TLS, "tls_handshake", f"TLS error while {doing}: {exc.reason or exc}")
    if isinstance(exc, TimeoutError):
        if deadline.expired():
            return deadline_error()
        return CollectError(Stage.CONNECT, "connect_timeout", f"timed out while {doing}")
    if isinstance(exc, ConnectionRefusedError):
        return CollectError(Stage.CONNECT, "refused", "connection refused")
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError):
        return CollectError(Stage.CONNECT, "reset", f"connection reset while {doing}")
    if isinstance(exc, BrokenPipeError):
        return CollectError(Stage.CONNECT, "closed", f"connection closed by the peer while {doing}")
    if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
        return CollectError(Stage.CONNECT, "unreachable", f"{exc.strerror or 'unreachable'} while {doing}")
    return CollectError(Stage.CONNECT, "unreachable", f"socket error while {doing}: {exc.strerror or exc}")


@dataclass(slots=True)
class Response:
    """One HTTP reply: status, headers (lower-case names, repeated ones joined by ', ') and body."""

    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str:
        """Return a header's value, or an empty string."""
        return self.headers.get(name, "")


class HttpConnection:
    """One keep-alive HTTP/1.1 connection to one host, every operation bounded by the deadline."""

    def __init__(
        self,
        *,
        address: str,
        port: int,
        host_header: str,
        deadline: Deadline,
        connect_timeout: float,
        max_body: int,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        path: str = "/wsman",
    ) -> None:
        self._address = address
        self._port = port
        self._host_header = host_header
        self._deadline = deadline
        self._connect_timeout = connect_timeout
        self._max_body = max_body
        self._tls = tls
        self._server_hostname = server_hostname
        self._path = path
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._served = 0  # replies read on the current connection
        self._received = False  # whether any byte of the current reply arrived
        self.connections = 0  # how many TCP connections were opened (a new one loses NTLM auth)

    @property
    def connected(self) -> bool:
        """Return whether a connection is open (requests on it keep their authentication)."""
        return self._sock is not None

    @property
    def peer_certificate(self) -> bytes | None:
        """Return the server certificate (DER) of the TLS connection, for channel bindings."""
        if isinstance(self._sock, ssl.SSLSocket):
            return self._sock.getpeercert(binary_form=True)
        return None

    def close(self) -> None:
        """Close the connection, if open."""
        sock, self._sock = self._sock, None
        self._buf.clear()
        self._served = 0
        if sock is not None:
            with contextlib.suppress(OSError):  # closing a broken socket can fail; nothing to do then
                sock.close()

    def connect(self) -> None:
        """Open the TCP (and TLS) connection within the connect timeout and the deadline."""
        self.close()
        infos = resolve(self._address, self._port, self._deadline)
        last: CollectError | None = None
        for family, socktype, proto, _canon, sockaddr in infos:
            sock = socket.socket(family, socktype, proto)
            try:
                sock.settimeout(min(self._connect_timeout, self._deadline.remaining()))
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                last = _socket_error(exc, self._deadline, "connecting")
                if last.stage is Stage.TIMEOUT:
                    raise last from None
                continue
            except CollectError:
                sock.close()
                raise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._handshake(sock)
            self._sock = sock
            self.connections += 1
            return
        raise (
            last
            if last is not None
            else CollectError(Stage.CONNECT, "unreachable", "no address to connect to")
        )

    def _handshake(self, raw: socket.socket) -> socket.socket:
        assert self._tls is not None
        try:
            tls = self._tls.wrap_socket(
                raw, server_hostname=self._server_hostname, do_handshake_on_connect=False
            )
        except (OSError, ValueError) as exc:
            raw.close()
            raise CollectError(
                Stage.TLS, "tls_handshake", f"TLS setup failed: {type(exc).__name__}"
            ) from None
        try:
            tls.settimeout(self._deadline.remaining())
            tls.do_handshake()
        except OSError as exc:
            tls.close()
            err = _socket_error(exc, self._deadline, "in the TLS handshake")
            if err.stage is Stage.CONNECT and err.reason in ("reset", "closed"):
                err = CollectError(Stage.TLS, "tls_handshake", err.message)
            raise err from None
        except CollectError:
            tls.close()
            raise
        return tls

    def request(self, headers: list[tuple[str, str]], body: bytes) -> Response:
        """Send one POST and read the whole reply (caps enforced); reconnect if needed first.

        On a reused connection that the peer closes or resets before any byte of the reply,
        raise ConnectionDropped: the caller decides whether to retry on a new connection.
        """
        if self._sock is None:
            self.connect()
        reused = self._served > 0
        self._received = False
        try:
            response = self._exchange(headers, body)
        except CollectError as exc:
            dropped = exc.stage is Stage.CONNECT and exc.reason in ("reset", "closed")
            if reused and dropped and not self._received:
                raise ConnectionDropped(exc.stage, exc.reason, exc.message) from None
            raise
        return response

    def _exchange(self, headers: list[tuple[str, str]], body: bytes) -> Response:
        lines = [
            f"POST {self._path} HTTP/1.1",
            f"Host: {self._host_header}",
            "User-Agent: natt-audit",
            "Connection: keep-alive",
            f"Content-Length: {len(body)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in headers)
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._sendall(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self._sendall(body)
        response, keep = self._read_response()
        if not keep:
            self.close()
        else:
            self._served += 1
        return response

    def _sendall(self, data: bytes) -> None:
        sock = self._sock
        assert sock is not None
        try:
            sock.settimeout(self._deadline.remaining())
            sock.sendall(data)
        except OSError as exc:
            self.close()
            raise _socket_error(exc, self._deadline, "sending the request") from None
        except CollectError:
            self.close()
            raise

    def _recv(self, eof_ok: bool = False) -> bool:
        """Read more bytes into the buffer, giving the peer only the time left; False at EOF."""
        sock = self._sock
        assert sock is not None
        try:
            sock.settimeout(self._deadline.remaining())
            chunk = sock.recv(_RECV_SIZE)
        except OSError as exc:
            self.close()
            raise _socket_error(exc, self._deadline, "reading the reply") from None
        except CollectError:
            self.close()
            raise
        if not chunk:
            if eof_ok:
                return False
            self.close()
            raise CollectError(Stage.CONNECT, "closed", "connection closed by the peer before a full reply")
        self._received = True
        self._buf += chunk
        return True

    def _read_head(self) -> tuple[int, str, str, dict[str, str]]:
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self._buf) > MAX_HEADER_BYTES:
                self.close()
                raise CollectError(Stage.PARSE, "oversize", f"reply headers exceed {MAX_HEADER_BYTES} bytes")
            self._recv()
        if end > MAX_HEADER_BYTES:
            self.close()
            raise CollectError(Stage.PARSE, "oversize", f"reply headers exceed {MAX_HEADER_BYTES} bytes")
        raw = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[: end + 4]
        status_line, *header_lines = raw.split("\r\n")
        parts = status_line.split(" ", 2)
        if (
            len(parts) < 2
            or not parts[0].startswith("HTTP/1.")
            or not (parts[1].isdigit() and len(parts[1]) == 3)
        ):
            self.close()
            raise CollectError(Stage.PARSE, "bad_http", f"not an HTTP/1.x status line: {status_line[:80]!r}")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                self.close()
                raise CollectError(Stage.PARSE, "bad_http", f"malformed header line: {line[:80]!r}")
            key = name.lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return int(parts[1]), parts[0], parts[2] if len(parts) > 2 else "", headers

    def _read_response(self) -> tuple[Response, bool]:
        while True:
            status, version, reason, headers = self._read_head()
            if status >= 200:
                break  # skip 1xx interim replies
        response = Response(status=status, reason=reason, headers=headers)
        connection = headers.get("connection", "").lower()
        keep = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
        if status in (204, 304):
            return response, keep
        transfer = headers.get("transfer-encoding", "").lower()
        if transfer:
            if transfer != "chunked":
                self.close()
                raise CollectError(
                    Stage.PARSE, "bad_http", f"unsupported Transfer-Encoding {transfer[:40]!r}"
                )
            response.body = self._read_chunked()
        elif "content-length" in headers:
            text = headers["content-length"].strip()
            if not text.isdigit() or len(text) > 18:
                self.close()
                raise CollectError(Stage.PARSE, "bad_http", f"bad Content-Length {text[:40]!r}")
            length = int(text)
            if length > self._max_body:
                self.close()
                raise CollectError(
                    Stage.PARSE, "oversize", f"reply of {length} bytes exceeds the {self._max_body}-byte cap"
                )
            response.body = self._read_exact(length)
        else:
            response.body = self._read_to_close()
            keep = False
        return response, keep

    def _read_exact(self, length: int) -> bytes:
        while len(self._buf) < length:
            self._recv()
        data = bytes(self._buf[:length])
        del self._buf[:length]
        return data

    def _read_line(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n")
            if end >= 0:
                break
            if len(self._buf) > MAX_CHUNK_LINE:
                self.close()
                raise CollectError(Stage.PARSE, "bad_http", "chunk-size line too long")
            self._recv()
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_text = self._read_line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                self.close()
                raise CollectError(Stage.PARSE, "bad_http", f"bad chunk size {size_text[:20]!r}") from None
            if size < 0:
                self.close()
                raise CollectError(Stage.PARSE, "bad_http", "negative chunk size")
            if size == 0:
                break
            if len(body) + size > self._max_body:
                self.close()
                raise CollectError(
                    Stage.PARSE, "oversize", f"chunked reply exceeds the {self._max_body}-byte cap"
                )
            body += self._read_exact(size)
            if self._read_line():
                self.close()
                raise CollectError(Stage.PARSE, "bad_http", "chunk not followed by CRLF")
        # Trailer section: header lines until an empty line; bounded like the headers.
        trailer = 0
        while line := self._read_line():
            trailer += len(line)
            if trailer > MAX_HEADER_BYTES:
                self.close()
                raise CollectError(Stage.PARSE, "oversize", "chunked trailer too long")
        return bytes(body)

    def _read_to_close(self) -> bytes:
        while True:
            if len(self._buf) > self._max_body:
                self.close()
                raise CollectError(Stage.PARSE, "oversize", f"reply exceeds the {self._max_body}-byte cap")
            if not self._recv(eof_ok=True):
                data = bytes(self._buf)
                self.close()
                return data


_TLS_CONTEXTS: dict[tuple[str | None, bool, str], ssl.SSLContext] = {}
_TLS_LOCK = threading.Lock()
TLS_VERSIONS = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1, "1.2": ssl.TLSVersion.TLSv1_2}


def tls_context(ca_bundle: str | None, verify: bool, min_version: str = "1.2") -> ssl.SSLContext:
    """Return a (shared, cached) client TLS context: verification on unless `verify` is False.

    `min_version` below 1.2 (``--tls-min-version``) is for WinRM 1.1 listeners on Windows XP and
    Server 2003, whose SChannel speaks TLS 1.0 at most. OpenSSL 3 refuses TLS 1.0/1.1 and their
    SHA-1 signatures above security level 0, so the level is lowered with the version; certificate
    and name verification stay as they are.
    """
    key = (ca_bundle, verify, min_version)
    with _TLS_LOCK:
        ctx = _TLS_CONTEXTS.get(key)
        if ctx is None:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_bundle)
            if min_version == "1.2":
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            else:
                with warnings.catch_warnings():
                    # TLS 1.0/1.1 are deprecated; asking for them is the point of the option.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    ctx.minimum_version = TLS_VERSIONS[min_version]
                ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            if not verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            _TLS_CONTEXTS[key] = ctx
        return ctx
