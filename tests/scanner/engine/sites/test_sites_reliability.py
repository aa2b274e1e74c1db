"""The sites engine when things die: a worker killed mid-batch, a coordinator stopped mid-scan.

docs/sites.md#reliability: a killed worker's batch is handed out again (late acks, visibility
timeout) and every host is recorded exactly once; SIGTERM on the coordinator revokes what is
queued and writes the partial report; `--resume` then finishes the same scan.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.lab import start_lab
from tests.peers.redis_server import RunningRedis
from tests.scanner.engine.sites.conftest import LAB_USER, Estate, broker_env
from tests.support.cliproc import CLI, LAB_PASSWORD, REPO, cli_env
from tests.support.sites import lab_hosts, report_hosts, site_inventory, worker, write_estate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slow_estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    """200 hosts at 20 ms per request: a batch of 100 takes a few seconds on 8 threads."""
    folder = tmp_path_factory.mktemp("slow")
    path = write_estate(
        folder / "estate.yaml", prefix="s-", count=200, username=LAB_USER, password=LAB_PASSWORD, latency_ms=20
    )
    with start_lab(path, folder / "lab") as lab:
        yield Estate(lab, LAB_USER, LAB_PASSWORD)


def _progress_seen(redis: RunningRedis, timeout: float = 30) -> None:
    """Wait until a batch reports progress (a worker is mid-batch)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for key in redis.cli("KEYS", "celery-task-meta-*").split():
            if '"PROGRESS"' in redis.cli("GET", key):
                return
        time.sleep(0.05)
    raise AssertionError("no batch reported progress")


def _coordinator(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen(
            [*CLI, "-v", "scan", *args],
            env=cli_env(env),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def test_killed_worker_batch_is_redelivered_and_every_host_recorded_once(
    redis: RunningRedis, slow_estate: Estate, tmp_path: Path
) -> None:
    inventory = site_inventory(tmp_path / "inv.yaml", {"kill": slow_estate.lab.inventory})
    names = [str(h["name"]) for h in lab_hosts(slow_estate.lab.inventory)]
    env = {**slow_estate.creds(), **broker_env(redis)}
    # Longer than the second worker's first batch, which first waits up to 5 s for the probe lease
    # and the logon note the killed worker left (docs/sites.md#reliability).
    args = ["--concurrency", "8", "--visibility-timeout", "8"]
    report = tmp_path / "r.json"
    scan = _coordinator(
        [
            "-i",
            str(inventory),
            "--broker",
            redis.url(),
            "--no-history",
            "--site-timeout",
            "60",
            "-f",
            "json",
            "-o",
            str(report),
        ],
        broker_env(redis),
        tmp_path / "scan.log",
    )
    try:
        with worker(redis.url(), "kill", env, tmp_path / "first.log", args=args) as first:
            _progress_seen(redis)
            first.send_signal(signal.SIGKILL)  # mid-batch: nothing acknowledged, nothing reported
            first.wait(10)
        with worker(redis.url(), "kill", env, tmp_path / "second.log", args=args):
            assert scan.wait(120) in (0, 1), (tmp_path / "scan.log").read_text()
    finally:
        if scan.poll() is None:
            scan.kill()
    hosts = report_hosts(report)
    assert sorted(hosts) == sorted(names)  # every host exactly once
    assert all(host["error"] is None for host in hosts.values())
    # The killed batch ran again on the new worker: it read more batches than the scan sent anew.
    second = (tmp_path / "second.log").read_text()
    assert second.count("batch of 100 hosts read") == 2, second


def test_sigterm_writes_partial_report_and_resume_finishes(
    redis: RunningRedis, slow_estate: Estate, tmp_path: Path
) -> None:
    inventory = site_inventory(tmp_path / "inv.yaml", {"term": slow_estate.lab.inventory})
    env = {**slow_estate.creds(), **broker_env(redis)}
    db = tmp_path / "history.db"
    common = ["-i", str(inventory), "--broker", redis.url(), "--db", str(db), "-f", "json", "--grace", "1"]
    with worker(redis.url(), "term", env, tmp_path / "worker.log", args=["--concurrency", "4"]):
        scan = _coordinator([*common, "-o", str(tmp_path / "partial.json")], broker_env(redis), tmp_path / "a.log")
        _progress_seen(redis)
        scan.send_signal(signal.SIGTERM)
        assert scan.wait(60) == 130, (tmp_path / "a.log").read_text()
        partial = json.loads((tmp_path / "partial.json").read_text())
        assert partial["scan"]["interrupted"] is True
        unread = [h for h in partial["hosts"] if h["error"] and h["error"]["reason"] == "interrupted"]
        assert unread, "the partial report should miss the hosts not reached"
        resumed = _coordinator(
            [*common, "--resume", "-o", str(tmp_path / "final.json")], broker_env(redis), tmp_path / "b.log"
        )
        assert resumed.wait(120) in (0, 1), (tmp_path / "b.log").read_text()
    final = json.loads((tmp_path / "final.json").read_text())
    assert final["scan"]["id"] == partial["scan"]["id"]
    assert final["scan"]["interrupted"] is False
    hosts = report_hosts(tmp_path / "final.json")
    assert len(hosts) == 200 and all(host["error"] is None for host in hosts.values())
    # What was queued when the coordinator stopped was revoked, not left for a worker to run later.
    assert "batches revoked" in (tmp_path / "a.log").read_text()
