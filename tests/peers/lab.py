"""Start the lab as a subprocess for a test, and stop it cleanly afterwards."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0


@dataclass
class RunningLab:
    """A lab process that is serving: its inventory, hosts, CA and process handle."""

    inventory: Path
    hosts: dict[str, tuple[str, int, str]]  # name -> (address, port, scheme)
    ca: Path | None
    process: subprocess.Popen[bytes]
    stderr_path: Path
    tags: dict[str, dict[str, str]] = field(default_factory=dict)

    def endpoint(self, name: str) -> str:
        """Return the WS-Man URL of one host."""
        address, port, scheme = self.hosts[name]
        return f"{scheme}://{address}:{port}/wsman"

    def stderr(self) -> str:
        """Return what the lab wrote to stderr so far."""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def start_lab(
    estate: Path | str,
    workdir: Path,
    *,
    extra_args: list[str] | None = None,
    timeout: float = START_TIMEOUT,
    prefix: Sequence[str] = (),
) -> Iterator[RunningLab]:
    """Run `python -m scanner.lab serve ESTATE` until the with-block ends; assert a clean exit 0.

    `prefix` wraps the command, e.g. `ip netns exec NS` to serve inside a network namespace.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    inventory = workdir / "inventory.yaml"
    inventory.unlink(missing_ok=True)
    stderr_path = workdir / "lab.stderr"
    argv = [*prefix, sys.executable, "-m", "scanner.lab", "serve", str(estate), "--inventory-out", str(inventory)]
    argv += list(extra_args or [])
    with stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        deadline = time.monotonic() + timeout
        while not inventory.exists():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"lab exited with {proc.returncode} before serving:\n"
                    + stderr_path.read_text(errors="replace")
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"lab not ready after {timeout}s:\n{stderr_path.read_text(errors='replace')}"
                )
            time.sleep(0.05)
        data = yaml.safe_load(inventory.read_text(encoding="utf-8"))
        default_scheme = data.get("defaults", {}).get("scheme", "http")
        hosts = {
            h["name"]: (h["address"], int(h["port"]), h.get("scheme", default_scheme)) for h in data["hosts"]
        }
        tags = {h["name"]: dict(h.get("tags") or {}) for h in data["hosts"]}
        ca = inventory.parent / "lab-ca.pem"
        lab = RunningLab(inventory, hosts, ca if ca.exists() else None, proc, stderr_path, tags)
        yield lab
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError("lab did not stop within 30 s of SIGTERM") from None
    assert proc.returncode == 0, (
        f"lab exited with {proc.returncode}:\n{stderr_path.read_text(errors='replace')}"
    )
