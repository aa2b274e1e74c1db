"""Serve one simulated host's keep-alive connections: parse HTTP, authenticate, unwrap, dispatch, wrap."""

from __future__ import annotations

import asyncio
import base64
import socket
import struct
from datetime import datetime
from typing import TYPE_CHECKING

from scanner.lab import faults, soap, wsman
from scanner.lab.auth import (
    ENCRYPTED_CONTENT_TYPE,
    Acceptor,
    AuthFailed,
    decrypt_body,
    encrypt_body,
    parse_auth_header,
)
from scanner.lab.estate import Host
from scanner.lab.httpwire import PROXY_502, SERVER, SERVER_LEGACY, SOAP_TYPE, parse_head, response

if TYPE_CHECKING:
    from scanner.lab.server import Lab

MAX_BODY = 4 * 1024 * 1024  # far above WinRM's MaxEnvelopeSizekb (500 KB)
OVERSIZE_BYTES = 200 * 1024 * 1024


class _Conn:
    """Per-TCP-connection security context (NTLM authenticates the connection, not the request)."""

    __slots__ = ("acceptor", "authed", "logon_open", "scheme")

    def __init__(self) -> None:
        self.acceptor: Acceptor | None = None
        self.authed = False
        self.scheme = b"Negotiate"
        self.logon_open = False  # a logon began on this connection and has no verdict yet


# What `_serve` hands back to the connection loop: response bytes, delay (ms), special action.
Served = tuple[bytes, int, str | None]


class HostServer:
    """Serve one simulated host."""

    def __init__(self, lab: Lab, host: Host, index: int, now: datetime) -> None:
        self.lab = lab
        self.host = host
        self.state = wsman.HostState(host, index, now)
        self.https = host.scheme == "https"
        # Windows offers Negotiate and Kerberos; the lab offers NTLM instead of Kerberos where NTLM is
        # allowed (docs/lab.md, what the lab does on the wire), and Windows' pair where it is not.
        offers = [(b"WWW-Authenticate", b"Negotiate")]
        if not host.ntlm:
            offers.append((b"WWW-Authenticate", b"Kerberos"))
        if self.https:
            offers.append((b"WWW-Authenticate", b'Basic realm="WSMAN"'))
        elif host.ntlm:
            offers.append((b"WWW-Authenticate", b"NTLM"))
        self.offers = offers
        self.fault = host.fault.kind if host.fault else None
        self.extra_ms = (host.fault.arg if host.fault and host.fault.kind == "slow" else 0) + host.latency_ms
        self.server = SERVER_LEGACY if host.legacy else SERVER
        major, minor, build = (int(part) for part in host.os.version.split("."))
        self.version = (major, minor, build) if host.ntlm_version else None
        self.once_pending = self.fault in ("503-once", "drop-once")  # fires on the host's first WMI request

    def _response(
        self,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        content_type: bytes | None = SOAP_TYPE,
        length: int | None = None,
    ) -> bytes:
        return response(status, body, headers, content_type, length, server=self.server)

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve requests on one keep-alive connection until the client closes it."""
        self.lab.writers.add(writer)
        self.lab.opened()
        conn = _Conn()
        try:
            if self.fault == "blackhole":
                while await reader.read(65536):
                    pass
                return
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError:
                    writer.write(self._response(400, b"", [(b"Connection", b"close")], None))
                    return
                req = parse_head(head)
                if req is None:
                    writer.write(self._response(400, b"", [(b"Connection", b"close")], None))
                    return
                method, path, headers = req
                try:
                    length = int(headers.get(b"content-length", b"0"))
                except ValueError:
                    length = -1
                if length < 0 or length > MAX_BODY:
                    writer.write(self._response(413 if length > 0 else 411, b"", [(b"Connection", b"close")], None))
                    return
                body = await reader.readexactly(length) if length else b""
                self.lab.requests += 1
                if self.fault == "trickle":
                    await self._trickle(writer)
                    return
                if self.fault == "reset":
                    await self._reset(writer)
                    return
                if self.fault == "http-502-html":
                    out = response(502, PROXY_502, [], b"text/html", server=b"nginx")
                    delay, special = self.extra_ms, None
                else:
                    out, delay, special = self._serve(conn, method, path, headers, body)
                    if special == "oversize":
                        if delay:
                            await asyncio.sleep(delay / 1000)
                        await self._oversize(writer)
                        continue
                    if special == "drop":
                        return  # closed without a reply: a keep-alive connection the host dropped
                if delay:
                    await asyncio.sleep(delay / 1000)
                writer.write(out)
                await writer.drain()
                if special == "close" or headers.get(b"connection", b"").lower() == b"close":
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._end_logon(conn)
            self.lab.open_connections -= 1
            self.lab.writers.discard(writer)
            writer.close()

    def _begin_logon(self, conn: _Conn) -> None:
        if not conn.logon_open:
            conn.logon_open = True
            self.lab.logons.begin()

    def _end_logon(self, conn: _Conn) -> None:
        if conn.logon_open:
            conn.logon_open = False
            self.lab.logons.end()

    def _unauthorized(self, conn: _Conn) -> Served:
        self._end_logon(conn)
        conn.acceptor = None
        conn.authed = False
        return self._response(401, b"", self.offers, None), self.extra_ms, None

    def _clear_fault(self, code: int, status: int, conn: _Conn | None = None) -> Served:
        """Answer in clear with a fault (the context is dropped: the client must start over)."""
        if conn is not None:
            self._end_logon(conn)
            conn.acceptor, conn.authed = None, False
        reply = faults.coded_fault(None, code, self.state.machine, self.host.winrm, status)
        return self._response(reply.status, reply.xml), self.extra_ms, None

    def _authenticate(self, conn: _Conn, scheme: str, token: bytes) -> Served | list[tuple[bytes, bytes]]:
        """Run one NTLM/Negotiate leg: a reply to send now, or the headers of an authenticated request."""
        if conn.acceptor is None or conn.acceptor.complete:
            if self.fault == "handshake-fault":
                assert self.host.fault is not None
                return self._clear_fault(self.host.fault.arg, self.host.fault.status, conn)
            strict = self.https and self.host.cbt_strict
            conn.acceptor = Acceptor(
                self.version, ntlm=self.host.ntlm, bindings=self.lab.channel_bindings if strict else None
            )
            conn.authed = False
            self._begin_logon(conn)
        conn.scheme = {"negotiate": b"Negotiate", "kerberos": b"Kerberos"}.get(scheme, b"NTLM")
        try:
            out_token = conn.acceptor.step(token)
        except AuthFailed:
            if conn.acceptor.verdict is False:
                self.lab.logons.record(self.host.name, accepted=False)
            return self._unauthorized(conn)
        if not conn.acceptor.complete:
            hdr = conn.scheme + b" " + base64.b64encode(out_token or b"")
            return self._response(401, b"", [(b"WWW-Authenticate", hdr)], None), self.extra_ms, None
        # The acceptor's verdict is known here, whatever the protocol: count it as the DC would.
        accepted = self.fault != "auth-reject"
        self.lab.logons.record(self.host.name, accepted=accepted)
        if not accepted:
            return self._unauthorized(conn)
        self._end_logon(conn)
        conn.authed = True
        if out_token:  # SPNEGO accept-complete token
            return [(b"WWW-Authenticate", conn.scheme + b" " + base64.b64encode(out_token))]
        return []

    def _serve(self, conn: _Conn, method: bytes, path: bytes, headers: dict[bytes, bytes], body: bytes) -> Served:
        """Authenticate, unwrap, dispatch, wrap: return (response bytes, delay ms, special action)."""
        if path.split(b"?", 1)[0].lower() != b"/wsman":
            return self._response(404, b"", [], None), self.extra_ms, None
        if method != b"POST":
            return self._response(405, b"", [(b"Allow", b"POST")], None), self.extra_ms, None
        auth_headers: list[tuple[bytes, bytes]] = []
        basic_ok = False
        auth = headers.get(b"authorization")
        if auth is not None:
            parsed = parse_auth_header(auth.decode("latin-1"))
            if parsed is None:
                return self._unauthorized(conn)
            scheme, token = parsed
            if scheme in ("negotiate", "ntlm", "kerberos"):
                step = self._authenticate(conn, scheme, token)
                if isinstance(step, tuple):
                    return step
                auth_headers = step
            elif scheme == "basic" and self.https:
                basic_ok = self.fault != "auth-reject" and self.lab.check_basic(token)
                self.lab.logons.begin()  # judged at once: in progress for no time, yet counted
                self.lab.logons.end()
                self.lab.logons.record(self.host.name, accepted=basic_ok)
                if not basic_ok:
                    return self._unauthorized(conn)
            else:
                return self._unauthorized(conn)
        ctype = headers.get(b"content-type", b"").lower()
        encrypted = ctype.startswith(b"multipart/encrypted")
        if not (conn.authed or basic_ok):
            if headers.get(b"wsmanidentify", b"").lower() == b"unauthenticated" and wsman.is_identify(body):
                return self._response(200, wsman.identify(self.host, authenticated=False)), self.extra_ms, None
            return self._unauthorized(conn)
        if not body:
            # pywinrm's encryption set-up POST: authenticate the connection, nothing to answer
            return self._response(200, b"", auth_headers, None), self.extra_ms, None
        if encrypted:
            if conn.acceptor is None or not conn.authed:
                return self._unauthorized(conn)
            try:
                plain = decrypt_body(conn.acceptor, body)
            except AuthFailed:
                # What cannot be decrypted cannot be answered encrypted either: a fault in clear.
                return self._clear_fault(faults.F_INVALID_BODY, 400, conn)
        elif not self.https:
            # AllowUnencrypted=false (the default): WinRM refuses a plaintext message over HTTP with 401.
            return self._unauthorized(conn)
        else:
            plain = body
        if self.once_pending:
            self.once_pending = False
            conn.acceptor, conn.authed = None, False  # the service restarted: the context is gone
            if self.fault == "drop-once":
                return b"", 0, "drop"
            headers_503 = [(b"Retry-After", b"0"), (b"Connection", b"close")]
            return self._response(503, b"", headers_503, None), self.extra_ms, "close"
        reply = self._dispatch(plain, authenticated=True)
        if reply.special:
            return b"", reply.delay_ms + self.extra_ms, reply.special
        out_body = reply.xml
        if encrypted and not reply.plain:
            assert conn.acceptor is not None
            return (
                self._response(
                    reply.status,
                    encrypt_body(conn.acceptor, out_body),
                    auth_headers,
                    ENCRYPTED_CONTENT_TYPE.encode(),
                ),
                reply.delay_ms + self.extra_ms,
                None,
            )
        return self._response(reply.status, out_body, auth_headers), reply.delay_ms + self.extra_ms, None

    def _dispatch(self, plain: bytes, authenticated: bool) -> soap.Reply:
        if wsman.is_identify(plain):
            return soap.Reply(200, wsman.identify(self.host, authenticated))
        try:
            req = soap.parse_request(plain)
        except soap.BadRequest:
            return faults.coded_fault(None, faults.F_SCHEMA, self.state.machine, self.host.winrm)
        if self.fault == "wrong-relatesto":
            req.message_id = soap.new_uuid()
        return wsman.handle(self.state, req)

    async def _trickle(self, writer: asyncio.StreamWriter) -> None:
        # One byte every two seconds, forever: a plausible response that never completes.
        data = self._response(200, b"", [], SOAP_TYPE, length=1 << 30) + b"<s:Envelope" + b" " * (1 << 20)
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(2)

    async def _reset(self, writer: asyncio.StreamWriter) -> None:
        # Headers and part of the body, then RST (SO_LINGER 0 makes close() abort the connection).
        writer.write(self._response(200, b"", [], SOAP_TYPE, length=4096) + soap.ENV_OPEN.encode()[:200])
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def _oversize(self, writer: asyncio.StreamWriter) -> None:
        # A 200 MB reply streamed in 1 MB chunks, never built in memory.
        head = (soap.ENV_OPEN + "><s:Header/><s:Body><p:Filler>").encode()
        tail = b"</p:Filler></s:Body></s:Envelope>"
        writer.write(self._response(200, b"", [], SOAP_TYPE, length=OVERSIZE_BYTES) + head)
        chunk = b"A" * (1 << 20)
        left = OVERSIZE_BYTES - len(head) - len(tail)
        while left > 0:
            n = min(left, len(chunk))
            writer.write(chunk[:n])
            left -= n
            await writer.drain()
        writer.write(tail)
        await writer.drain()
