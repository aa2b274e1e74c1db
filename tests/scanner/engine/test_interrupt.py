"""docs/reliability.md#interruption: SIGTERM mid-scan leaves a valid partial report marked interrupted (exit 130);
SIGKILL mid-write leaves the previous report intact under its final name. (`--resume` is another
helper's work: not covered here.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.peers.hostile_lab import CREDS, REPO, Scanned
from tests.peers.lab import RunningLab, start_lab
from tests.peers.rawserver import blackholed_port
from tests.support.cliproc import CLI, LAB_CREDS, cli_env

PREVIOUS = b'{"previous": "report", "intact": true}\n'


def _inventory(path: Path, scanned: Scanned, ports: list[int]) -> Path:
    lab = scanned.lab
    lines = ["hosts:"]
    for name in ("r-dword-2", "r-sz-2"):
        address, port, _ = lab.hosts[name]
        lines.append(f"  - {{name: {name}, address: {address}, port: {port}}}")
    lines += [f"  - {{name: syn-{p}, address: 127.0.0.1, port: {p}}}" for p in ports]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NATT_AUDIT_")}
    env.update(CREDS)
    env["PYTHONPATH"] = str(REPO)
    return env


def test_sigterm_mid_scan_writes_a_partial_report_marked_interrupted(scanned: Scanned, tmp_path: Path) -> None:
    with ExitStack() as stack:
        ports = [stack.enter_context(blackholed_port()) for _ in range(5)]
        inventory = _inventory(tmp_path / "hosts.yaml", scanned, ports)
        out = tmp_path / "report.json"
        out.write_bytes(PREVIOUS)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from scanner.cli.main import entry_point; entry_point()",
                "scan",
                "-i",
                str(inventory),
                "-f",
                "json",
                "-o",
                str(out),
                "--concurrency",
                "1",
                "--host-timeout",
                "2",
                "--connect-timeout",
                "2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
            cwd=tmp_path,
        )
        time.sleep(3.5)  # start-up, the two lab hosts, then into the first black-holed host
        assert proc.poll() is None, proc.communicate()
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    assert proc.returncode == 130, stderr
    assert took < 2 + 3  # the in-flight host ends by its own deadline; nothing new starts
    report = json.loads(out.read_bytes())
    assert report["scan"]["interrupted"] is True
    hosts = {h["name"]: h for h in report["hosts"]}
    assert len(hosts) == 7  # one record per inventory host, finished or not
    assert hosts["r-dword-2"]["error"] is None  # what was read before the signal is kept
    unreached = [h for h in hosts.values() if h["error"] and h["error"]["reason"] == "interrupted"]
    assert unreached, "the hosts never started must be marked, not dropped"
    assert all(h["status"] == "error" for h in unreached)  # never counted as compliant
    assert b"interrupted" in stderr


# A child that dies by SIGKILL at a precise point of the report write: when the temp file is fsynced
# (data written, not yet renamed) or when it is about to be renamed over the final name.
KILLER = r"""
import os, signal, sys
from scanner.core import atomic
point = sys.argv[1]
real_fsync, real_replace = os.fsync, os.replace
def fsync(fd):
    real_fsync(fd)
    if point == "fsync" and ".report.json." in os.readlink(f"/proc/self/fd/{fd}"):
        os.kill(os.getpid(), signal.SIGKILL)
def replace(src, dst, *a, **k):
    if point == "replace" and str(dst).endswith("report.json"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *a, **k)
atomic.os.fsync = fsync
atomic.os.replace = replace
from scanner.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("point", ["fsync", "replace"])
def test_sigkill_mid_write_leaves_the_previous_report(scanned: Scanned, tmp_path: Path, point: str) -> None:
    inventory = _inventory(tmp_path / "hosts.yaml", scanned, [])
    out = tmp_path / "report.json"
    out.write_bytes(PREVIOUS)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLER,
            point,
            "scan",
            "-i",
            str(inventory),
            "-f",
            "json",
            "-o",
            str(out),
            "--host-timeout",
            "3",
        ],
        capture_output=True,
        env=_env(),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert out.read_bytes() == PREVIOUS  # the final name still holds the previous report, whole
    # The half-done new report exists only under a temp name, never the final one.
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".report.json.")]
    assert all(name.endswith(".tmp") for name in leftovers)


# docs/reliability.md#interruption: a stopped scan says what it is waiting for and how to finish.
SLOW_ESTATE = """\
accounts:
  - {username: 'LAB\\auditor', password: 'Lab-Passw0rd!'}
hosts:
  - {name: fast-1}
  - {name: fast-2}
  - {name: slow-1, fault: 'slow:1500'}
  - {name: slow-2, fault: 'slow:1500'}
  - {name: slow-3, fault: 'slow:1500'}
  - {name: slow-4, fault: 'slow:1500'}
"""


@pytest.fixture(scope="module")
def slow_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """Serve two fast hosts and four whose every reply takes 1.5 s."""
    work = tmp_path_factory.mktemp("slow-lab")
    estate = work / "estate.yaml"
    estate.write_text(SLOW_ESTATE, encoding="utf-8")
    with start_lab(estate, work / "lab") as lab:
        yield lab


def _scan(lab: RunningLab, tmp_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    argv = [*CLI, "scan", "-i", str(lab.inventory), "--db", str(tmp_path / "history.db"), "-o", str(tmp_path / "r.txt")]
    return subprocess.Popen(
        [*argv, "--concurrency", "2", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(LAB_CREDS),
        cwd=tmp_path,
    )


def _when_slow_hosts_are_in_flight(proc: subprocess.Popen[bytes], journal: Path) -> None:
    """Wait until both fast hosts are journaled: the two workers are then on slow hosts."""
    deadline = time.monotonic() + 30
    while journal.read_bytes().count(b"fast-") < 2 if journal.exists() else True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the fast hosts were never journaled"
        time.sleep(0.05)
    time.sleep(0.3)


def test_a_stopped_scan_says_what_it_waits_for_and_how_to_finish(slow_lab: RunningLab, tmp_path: Path) -> None:
    proc = _scan(slow_lab, tmp_path, "--grace", "1")
    _when_slow_hosts_are_in_flight(proc, tmp_path / "history.db.journal")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    lines = err.decode().splitlines()
    assert proc.returncode == 130, err
    assert "natt-audit: stopping: waiting up to 1 s for 2 hosts in flight; Ctrl-C again to stop now" in lines
    assert lines[-1] == "natt-audit: run `natt-audit scan --resume` with the same options to finish this scan"

    # Following the advice finishes the scan: the slow hosts are read, the fast ones not again.
    done = subprocess.run(
        [
            *CLI,
            "scan",
            "-i",
            str(slow_lab.inventory),
            "--db",
            str(tmp_path / "history.db"),
            "--resume",
            "--concurrency",
            "4",
            "-f",
            "json",
            "-o",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        env=cli_env(LAB_CREDS),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "r.json").read_bytes())
    assert report["scan"]["interrupted"] is False
    assert {h["name"]: h["status"] for h in report["hosts"]} == {
        name: "pass" for name in ("fast-1", "fast-2", "slow-1", "slow-2", "slow-3", "slow-4")
    }


def test_a_second_signal_stops_at_once_and_says_so(slow_lab: RunningLab, tmp_path: Path) -> None:
    proc = _scan(slow_lab, tmp_path, "--no-history")
    time.sleep(4)  # start-up and the two fast hosts (no journal to watch without history)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    lines = err.decode().splitlines()
    assert proc.returncode == 130, err
    assert took < 5  # not the 10 s grace
    assert "natt-audit: stopping: waiting up to 10 s for 2 hosts in flight; Ctrl-C again to stop now" in lines
    assert "natt-audit: stopping now: 2 hosts in flight reported as not reached" in lines
    assert lines[-1] == ("natt-audit: this scan kept no checkpoint journal to resume from: run it again to finish it")
