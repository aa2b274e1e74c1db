"""The lab's asyncio server: one loopback listener per simulated host, Windows-faithful HTTP and auth."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hmac
import json
import os
import resource
import signal
import socket
import ssl
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scanner.lab import faults, soap, wsman
from scanner.lab.auth import (
    ENCRYPTED_CONTENT_TYPE,
    Acceptor,
    AuthFailed,
    LogonCounter,
    decrypt_body,
    encrypt_body,
    parse_auth_header,
    tls_server_end_point,
    write_credential_file,
)
from scanner.lab.estate import CODE_FAULTS, Estate, Host
from scanner.lab.httpwire import PROXY_502, SERVER, SERVER_LEGACY, SOAP_TYPE, parse_head, response
from scanner.lab.snapshot import write_state

MAX_HEAD = 64 * 1024
MAX_BODY = 4 * 1024 * 1024  # far above WinRM's MaxEnvelopeSizekb (500 KB)
OVERSIZE_BYTES = 200 * 1024 * 1024


class LabError(Exception):
    """The lab cannot start (ports, file descriptors, files)."""


@dataclass(frozen=True)
class HostEndpoint:
    """Where one simulated host listens."""

    name: str
    address: str
    port: int
    scheme: str
    tags: dict[str, str]
    fault: str | None
    legacy: bool = False  # WinRM 1.1: the inventory says `winrm: legacy`


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


class Lab:
    """All listeners of one estate in one asyncio loop."""

    def __init__(
        self,
        estate: Estate,
        *,
        bind: str = "127.0.0.1",
        port_base: int | None = None,
        workdir: Path | None = None,
        ca_dir: Path | None = None,
    ) -> None:
        if not _is_loopback(bind):
            raise LabError(f"refusing to bind {bind}: the lab listens on loopback only")
        self.estate = estate
        self.hosts = estate.resolved()
        self.bind = bind
        self.port_base = port_base
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="natt-lab-"))
        self.ca_dir = ca_dir or self.workdir
        self.ca_path: Path | None = None
        self.servers: list[asyncio.AbstractServer] = []
        self.refused: list[socket.socket] = []
        self.writers: set[asyncio.StreamWriter] = set()
        self.requests = 0  # HTTP requests served (benchmarks read it via --stats-out)
        self.connections = 0  # TCP connections accepted
        self.logons = LogonCounter()  # judged logons per host (docs/lab.md, "Counters")
        self.open_connections = 0
        self.peak_connections = 0  # most connections open at once
        self.peak_connections_before_logon = 0  # the same, counted only until the first accepted logon
        self.endpoints: list[HostEndpoint] = []
        self.states: dict[str, wsman.HostState] = {}  # served hosts' mutable state (`--state-out`)
        self._basic = [(a.username.encode(), a.password.get_secret_value().encode()) for a in estate.accounts]
        self._cred_file: Path | None = None
        self.channel_bindings: Any = None  # RFC 5929 tls-server-end-point of the HTTPS certificate

    def opened(self) -> None:
        """Count a new connection and the peaks of connections open at once."""
        self.connections += 1
        self.open_connections += 1
        self.peak_connections = max(self.peak_connections, self.open_connections)
        if not self.logons.first_success:
            self.peak_connections_before_logon = max(self.peak_connections_before_logon, self.open_connections)

    def check_basic(self, token: bytes) -> bool:
        """Check a Basic token against the estate accounts in constant time."""
        user, sep, pw = token.partition(b":")
        ok = False
        for u, p in self._basic:
            ok |= bool(sep) and hmac.compare_digest(user.lower(), u.lower()) and hmac.compare_digest(pw, p)
        return ok

    async def start(self) -> list[HostEndpoint]:
        """Bind every listener; return the endpoints in estate order."""
        raise_nofile(len(self.hosts) + 256)
        self._cred_file = write_credential_file(self.estate.accounts, self.workdir)
        now = datetime.now(UTC)
        tls: ssl.SSLContext | None = None
        tls_legacy: ssl.SSLContext | None = None
        https_names = [h.name for h in self.hosts if h.scheme == "https"]
        if https_names:
            from scanner.lab.tls import legacy_server_context, make_server_context, server_certificate

            tls, self.ca_path = make_server_context(https_names, self.ca_dir, self.workdir)
            self.channel_bindings = tls_server_end_point(server_certificate(self.workdir))
            if any(h.legacy for h in self.hosts if h.scheme == "https"):
                tls_legacy = legacy_server_context(self.workdir)
        picker = _PortPicker(self.bind)
        for index, host in enumerate(self.hosts):
            try:
                if self.port_base is None:
                    sock = picker.next()
                else:
                    sock = _bind(self.bind, self.port_base + index, reuse=True)
            except OSError as exc:
                await self.stop()
                want = "a free port" if self.port_base is None else f"port {self.port_base + index}"
                raise LabError(
                    f"cannot bind {self.bind} {want} for host {host.name}: {exc.strerror}"
                ) from None
            port = sock.getsockname()[1]
            if host.fault and host.fault.kind == "refuse":
                # Bound but not listening: connections get RST (refused) and nobody else can take the port.
                self.refused.append(sock)
            else:
                hs = HostServer(self, host, index, now)
                self.states[host.name] = hs.state
                srv = await asyncio.start_server(
                    hs.connection,
                    sock=sock,
                    limit=MAX_HEAD,
                    backlog=128,
                    ssl=(tls_legacy if host.legacy else tls) if host.scheme == "https" else None,
                )
                self.servers.append(srv)
            self.endpoints.append(
                HostEndpoint(
                    host.name,
                    self.bind,
                    port,
                    host.scheme,
                    host.tags,
                    None if host.fault is None else _fault_text(host),
                    host.legacy,
                )
            )
        return self.endpoints

    async def stop(self) -> None:
        """Close every listener and connection."""
        for srv in self.servers:
            srv.close()
        for w in list(self.writers):
            w.transport.abort()
        for s in self.refused:
            s.close()
        self.servers.clear()
        self.refused.clear()
        if self._cred_file is not None:
            with contextlib.suppress(FileNotFoundError):
                self._cred_file.unlink()
            self._cred_file = None


def _bind(addr: str, port: int, *, reuse: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((addr, port))
    except OSError:
        sock.close()
        raise
    return sock


class _PortPicker:
    """Hand out free ports below the ephemeral range (10000-32767), so clients keep their source ports.

    bind(port 0) makes the kernel search the ephemeral range, which gets slow with thousands of
    listeners and competes with the scanner's outgoing connections; walking our own range is fast.
    No SO_REUSEADDR: a port held by anyone else (another lab included) is skipped.
    """

    LOW, HIGH = 10000, 32768

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.next_port = self.LOW + int.from_bytes(os.urandom(2), "big") % (self.HIGH - self.LOW)
        self.tried = 0

    def next(self) -> socket.socket:
        while self.tried < self.HIGH - self.LOW:
            port = self.next_port
            self.next_port = self.LOW if port + 1 >= self.HIGH else port + 1
            self.tried += 1
            try:
                return _bind(self.addr, port, reuse=False)
            except OSError as exc:
                if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise
        return _bind(self.addr, 0, reuse=False)


def _fault_text(host: Host) -> str:
    assert host.fault is not None
    fault = host.fault
    if fault.kind == "slow":
        return f"slow:{fault.arg}"
    if fault.kind in CODE_FAULTS:
        return f"{fault.kind}:{fault.arg}" + (f"@{fault.status}" if fault.status != 500 else "")
    return fault.kind


def _is_loopback(addr: str) -> bool:
    return addr.startswith("127.") or addr in ("::1", "localhost")


def raise_nofile(needed: int) -> None:
    """Raise RLIMIT_NOFILE to the hard limit; fail clearly when even that is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed * 2)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < needed:
        raise LabError(
            f"need at least {needed} open files for {needed - 256} hosts but RLIMIT_NOFILE is {soft}"
            f" (hard {hard});"
            " raise the hard limit (ulimit -Hn / LimitNOFILE=) or serve fewer hosts"
        )


def write_inventory(path: Path, endpoints: list[HostEndpoint], ca: Path | None) -> None:
    """Write the scanner inventory atomically (temp file + rename); JSON strings are valid YAML scalars."""
    lines = [
        "# written by natt-audit lab; one entry per simulated host",
        "defaults: {transport: ntlm, scheme: http}",
    ]
    if ca is not None:
        lines.append(f"# HTTPS hosts are signed by the lab CA: {ca.name}")
    lines.append("hosts:")
    for ep in endpoints:
        extra = ", scheme: https, transport: basic" if ep.scheme == "https" else ""
        if ep.legacy:
            extra += ", winrm: legacy"
        tags = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(ep.tags.items()))
        lines.append(
            f"  - {{name: {json.dumps(ep.name)}, address: {ep.address}, port: {ep.port}{extra},"
            f" tags: {{{tags}}}}}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".inventory-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def write_stats(path: Path, lab: Lab) -> None:
    """Write the lab's counters as JSON, atomically (temp file + rename)."""
    stats = {
        "requests": lab.requests,
        "connections": lab.connections,
        "hosts": len(lab.hosts),
        "logons": lab.logons.to_json(),
        "peak_connections": lab.peak_connections,
        "peak_connections_before_logon": lab.peak_connections_before_logon,
    }
    fd, tmp = tempfile.mkstemp(prefix=".stats-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(stats, sort_keys=True) + "\n")
    os.replace(tmp, path)


def serve(
    estate: Estate,
    inventory_out: Path,
    *,
    port_base: int | None = None,
    bind: str = "127.0.0.1",
    stats_out: Path | None = None,
    keytab: Path | None = None,
    state_out: Path | None = None,
) -> int:
    """Serve the estate until SIGINT/SIGTERM; return the exit code (0 on a signal)."""
    return asyncio.run(
        _serve(
            estate,
            inventory_out,
            port_base=port_base,
            bind=bind,
            stats_out=stats_out,
            keytab=keytab,
            state_out=state_out,
        )
    )


def use_keytab(keytab: Path, workdir: Path) -> None:
    """Make this process's Kerberos acceptor use `keytab`, with its replay cache in `workdir`.

    MIT krb5 reads the acceptor keytab from KRB5_KTNAME and keeps a replay cache of the
    authenticators it accepted in KRB5RCACHEDIR (krb5.conf(5), kerberos(7)); set here, in the lab
    process only, so neither the scanner nor another lab shares them.
    """
    os.environ["KRB5_KTNAME"] = f"FILE:{keytab.resolve()}"
    os.environ["KRB5RCACHEDIR"] = str(workdir)


def _write_outputs(lab: Lab, stats_out: Path | None, state_out: Path | None) -> None:
    """Write the counters and the host state files that were asked for."""
    if stats_out is not None:
        write_stats(stats_out.resolve(), lab)
    if state_out is not None:
        write_state(state_out.resolve(), lab.states)


async def _serve(
    estate: Estate,
    inventory_out: Path,
    *,
    port_base: int | None,
    bind: str,
    stats_out: Path | None = None,
    keytab: Path | None = None,
    state_out: Path | None = None,
) -> int:
    started = time.monotonic()
    inventory_out = inventory_out.resolve()
    with tempfile.TemporaryDirectory(prefix="natt-lab-") as work:
        if keytab is not None:
            use_keytab(keytab, Path(work))
        lab = Lab(estate, bind=bind, port_base=port_base, workdir=Path(work), ca_dir=inventory_out.parent)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if stats_out is not None or state_out is not None:
            # SIGUSR1: write the counters (a benchmark reads them between two clients) and the
            # host state (a test reads it between a change and a rescan) now.
            loop.add_signal_handler(signal.SIGUSR1, _write_outputs, lab, stats_out, state_out)
        try:
            eps = await lab.start()
        except LabError as exc:
            print(f"natt-audit lab: {exc}", file=sys.stderr)  # noqa: T201 - CLI diagnostics
            return 2
        write_inventory(inventory_out, eps, lab.ca_path)
        ports = sorted(e.port for e in eps)
        span = f"{ports[0]}-{ports[-1]}" if ports else "-"
        ca = f"; CA at {lab.ca_path}" if lab.ca_path else ""
        print(  # noqa: T201 - the one ready line
            f"natt-audit lab: serving {len(eps)} hosts on {bind}:{span}; inventory at {inventory_out}{ca}"
            f" (started in {time.monotonic() - started:.2f}s)",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
        await lab.stop()
        _write_outputs(lab, stats_out, state_out)
    return 0
