"""The serve command: signals, start-up failures, port choice."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

from tests.peers.lab import start_lab

REPO = Path(__file__).resolve().parents[3]
ACCOUNTS = "accounts:\n  - {username: 'LAB\\auditor', password: 'Lab-Passw0rd!'}\n"


def test_sigint_exits_zero_and_port_base(tmp_path: Path) -> None:
    estate = tmp_path / "e.yaml"
    estate.write_text(ACCOUNTS + "generate:\n  - {count: 3, prefix: h-}\n", encoding="utf-8")
    with start_lab(estate, tmp_path, extra_args=["--port-base", "23451"]) as lab:
        assert [p for _, p, _ in lab.hosts.values()] == [23451, 23452, 23453]
        assert lab.ca is None
        lab.process.send_signal(signal.SIGINT)
        assert lab.process.wait(timeout=30) == 0


def test_bad_estate_exits_2_with_file_line(tmp_path: Path) -> None:
    estate = tmp_path / "e.yaml"
    estate.write_text(ACCOUNTS + "hosts:\n  - {name: a, os: win95}\n", encoding="utf-8")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "scanner.lab",
            "serve",
            str(estate),
            "--inventory-out",
            str(tmp_path / "i.yaml"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert f"{estate}:4:" in out.stderr and "win95" in out.stderr
    assert not (tmp_path / "i.yaml").exists()


def _low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))


def test_too_few_file_descriptors_is_a_clear_error(tmp_path: Path) -> None:
    estate = tmp_path / "e.yaml"
    estate.write_text(ACCOUNTS + "generate:\n  - {count: 500, prefix: h-}\n", encoding="utf-8")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "scanner.lab",
            "serve",
            str(estate),
            "--inventory-out",
            str(tmp_path / "i.yaml"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=_low_nofile,
    )
    assert out.returncode == 2
    assert "RLIMIT_NOFILE is 200" in out.stderr and "raise the hard limit" in out.stderr
    assert not (tmp_path / "i.yaml").exists()
