"""A real redis-server (the Debian package) for the sites engine tests, on a free port with a password."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REDIS_PASSWORD = "Br0ker-Passw0rd!"  # the tests' broker password; never a real one


@dataclass
class RunningRedis:
    """A redis-server this test started: where it listens and how to log on."""

    host: str
    port: int
    password: str
    process: subprocess.Popen[bytes]
    workdir: Path
    tls_port: int | None = None

    def url(self, db: int = 0, *, host: str | None = None) -> str:
        """Return the broker URL, without the password (as natt-audit wants it)."""
        return f"redis://{host or self.host}:{self.port}/{db}"

    def tls_url(self, db: int = 0) -> str:
        """Return the rediss:// URL of the TLS port."""
        assert self.tls_port is not None
        return f"rediss://localhost:{self.tls_port}/{db}"

    def cli(self, *args: str) -> str:
        """Run redis-cli against this server (password in the environment, never in argv)."""
        done = subprocess.run(
            ["redis-cli", "--no-auth-warning", "-h", self.host, "-p", str(self.port), *args],
            capture_output=True,
            env={"REDISCLI_AUTH": self.password, "PATH": "/usr/bin:/bin"},
            timeout=30,
            check=True,
        )
        return done.stdout.decode()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on `host` a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ready(host: str, port: int, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"redis-server not listening on {host}:{port} after {timeout}s")


@contextlib.contextmanager
def start_redis(
    workdir: Path,
    *,
    binds: Sequence[str] = ("127.0.0.1",),
    password: str = REDIS_PASSWORD,
    tls: tuple[Path, Path, Path] | None = None,
) -> Iterator[RunningRedis]:
    """Run redis-server with `requirepass` on a free port of `binds` until the with-block ends.

    `tls` is (certificate, key, CA): the server then also listens with TLS on a second port.
    """
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed: scripts/test installs the Debian package")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port(binds[0])
    lines = [
        f"bind {' '.join(binds)}",
        f"port {port}",
        f"requirepass {password}",
        "save ''",
        "appendonly no",
        f"dir {workdir}",
        "protected-mode no",
        "daemonize no",
        "loglevel warning",
        f"logfile {workdir / 'redis.log'}",
    ]
    tls_port = None
    if tls is not None:
        cert, key, ca = tls
        tls_port = free_port(binds[0])
        lines += [
            f"tls-port {tls_port}",
            f"tls-cert-file {cert}",
            f"tls-key-file {key}",
            f"tls-ca-cert-file {ca}",
            "tls-auth-clients no",
        ]
    config = workdir / "redis.conf"
    # The password sits in a 0600 file, never in argv (where `ps` would show it).
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config.chmod(0o600)
    process = subprocess.Popen(
        ["redis-server", str(config)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _ready(binds[0], port, 20, process)
        yield RunningRedis(binds[0], port, password, process, workdir, tls_port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
