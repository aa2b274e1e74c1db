"""Every input a user names is read with a bound: devices and FIFOs are refused at once, exit 2.

Reproduced before the bounded reader (scanner/core/bounded.py): `-p /dev/zero` grew to 17 GB,
`--waivers /dev/urandom` to 10.7 GB, `--config /dev/zero` until the kernel killed it, and
`-i FIFO` / `--config FIFO` hung. Each case runs the real CLI as a child and measures that one
child (wait4): refused with exit 2, within 1 s of CPU, under 100 MB of RSS, and without hanging.
The wall-clock bound is looser than the CPU bound only because the test machine is shared: a
child that blocks (the FIFO hang) or reads without end fails both.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cliproc import LAB_CREDS, Measured, run_measured

CPU_LIMIT_S = 1.0
WALL_LIMIT_S = 5.0
RSS_LIMIT_MB = 100.0


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A named pipe that no process ever writes to."""
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@contextlib.contextmanager
def flooding(path: Path) -> Iterator[None]:
    """Write to the FIFO at `path` without end until its reader goes away."""
    stop = threading.Event()

    def flood() -> None:
        with contextlib.suppress(OSError), open(path, "wb") as handle:
            while not stop.is_set():
                handle.write(b"A" * 65536)

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(OSError):  # unblock a writer still waiting for a reader
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        thread.join(5)


def _inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.txt"
    path.write_text("127.0.0.1:1\n", encoding="utf-8")
    return path


def _refused(result: Measured, *words: str) -> None:
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, err
    for word in words:
        assert word in err, err
    assert "Traceback" not in err
    assert result.cpu_s < CPU_LIMIT_S, result
    assert result.wall_s < WALL_LIMIT_S, result
    assert result.max_rss_mb < RSS_LIMIT_MB, result


def _scan(*args: str, tmp_path: Path, env: dict[str, str] | None = None) -> Measured:
    return run_measured(
        "scan", "--no-history", "--connect-timeout", "1", "--host-timeout", "2", *args, env={**LAB_CREDS, **(env or {})}
    )


def test_policy_from_dev_zero(tmp_path: Path) -> None:
    _refused(_scan("-i", str(_inventory(tmp_path)), "-p", "/dev/zero", tmp_path=tmp_path), "/dev/zero", "device")


def test_waivers_from_dev_urandom(tmp_path: Path) -> None:
    result = _scan("-i", str(_inventory(tmp_path)), "--waivers", "/dev/urandom", tmp_path=tmp_path)
    _refused(result, "/dev/urandom", "device")


def test_config_from_dev_zero(tmp_path: Path) -> None:
    _refused(_scan("--config", "/dev/zero", tmp_path=tmp_path), "/dev/zero", "device")


def test_config_from_a_fifo(tmp_path: Path, fifo: Path) -> None:
    _refused(_scan("--config", str(fifo), tmp_path=tmp_path), str(fifo), "FIFO")


def test_inventory_from_a_fifo(tmp_path: Path, fifo: Path) -> None:
    _refused(_scan("-i", str(fifo), tmp_path=tmp_path), str(fifo), "FIFO")


def test_inventory_from_dev_zero(tmp_path: Path) -> None:
    _refused(_scan("-i", "/dev/zero", tmp_path=tmp_path), "/dev/zero", "device")


def test_password_file_from_dev_zero(tmp_path: Path) -> None:
    result = _scan(
        "-i", str(_inventory(tmp_path)), "--password-file", "/dev/zero", tmp_path=tmp_path
    )
    _refused(result, "/dev/zero", "device")


def test_password_file_from_a_pipe_that_floods(tmp_path: Path, fifo: Path) -> None:
    with flooding(fifo):
        result = _scan("-i", str(_inventory(tmp_path)), "--password-file", str(fifo), tmp_path=tmp_path)
    _refused(result, "larger than 65536 bytes")


def test_hec_token_file_from_dev_zero(tmp_path: Path) -> None:
    dest = "hec+https://127.0.0.1:1?token_file=/dev/zero"
    _refused(_scan("-i", str(_inventory(tmp_path)), "--export", dest, tmp_path=tmp_path), "device")


def test_saved_report_from_dev_zero_for_export() -> None:
    _refused(run_measured("export", "/dev/zero", "-f", "csv"), "/dev/zero", "device")


def test_saved_report_from_a_fifo_for_explain(fifo: Path) -> None:
    _refused(run_measured("policy", "explain", "--report", str(fifo), "--host", "x"), str(fifo), "FIFO")
