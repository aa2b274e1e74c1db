"""Run the lab: bind one loopback listener per simulated host, write its inventory and counters, serve."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import json
import os
import resource
import signal
import socket
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scanner.lab import wsman
from scanner.lab.auth import LogonCounter, tls_server_end_point, write_credential_file
from scanner.lab.estate import CODE_FAULTS, Estate, Host
from scanner.lab.hostserver import HostServer
from scanner.lab.snapshot import write_state

MAX_HEAD = 64 * 1024


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
