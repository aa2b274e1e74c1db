"""The sites engine end to end on loopback: real redis-server, real Celery workers, the real CLI.

docs/sites.md: a distributed scan's report equals a local scan's; a site without a worker ends as
site/no_collector; a wrong broker password is exit 2 before anything is queued; a malformed result
costs only the hosts it spoils.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.peers.redis_server import RunningRedis
from tests.scanner.engine.sites.conftest import Estate, broker_env
from tests.support.cliproc import run_cli
from tests.support.sites import lab_hosts, report_hosts, site_inventory, worker

pytestmark = pytest.mark.slow

VOLATILE_SCAN = ("id", "started_at", "finished_at")


def _scan(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_cli("scan", "--no-history", "-f", "json", *args, env=env, timeout=timeout)


def _without_timings(report: Path) -> dict[str, object]:
    doc = json.loads(report.read_text(encoding="utf-8"))
    for key in VOLATILE_SCAN:
        doc["scan"].pop(key)
    return doc


def test_distributed_report_equals_local(redis: RunningRedis, estate: Estate, tmp_path: Path) -> None:
    hosts = lab_hosts(estate.lab.inventory)
    inventory = site_inventory(tmp_path / "inv.yaml", {"alpha": hosts[:60], "beta": hosts[60:120]})
    local = _scan("-i", str(inventory), "-o", str(tmp_path / "local.json"), env=estate.creds())
    assert local.returncode in (0, 1), local.stderr
    with (
        worker(redis.url(), "alpha", {**estate.creds(), **broker_env(redis)}, tmp_path / "alpha.log"),
        worker(redis.url(), "beta", {**estate.creds(), **broker_env(redis)}, tmp_path / "beta.log"),
    ):
        # The coordinator has no account: no NATT_AUDIT_USERNAME/PASSWORD, no terminal to prompt on.
        done = _scan(
            "-i", str(inventory), "--broker", redis.url(), "-o", str(tmp_path / "dist.json"), env=broker_env(redis)
        )
    assert done.returncode == local.returncode, done.stderr
    assert _without_timings(tmp_path / "dist.json") == _without_timings(tmp_path / "local.json")
    summary = json.loads((tmp_path / "dist.json").read_text())["summary"]
    assert summary["sites"] == {
        "alpha": {"hosts": 60, "read": 60, "coverage": 1.0},
        "beta": {"hosts": 60, "read": 60, "coverage": 1.0},
    }
    assert "Password" not in done.stderr


def test_site_without_worker_is_no_collector(redis: RunningRedis, estate: Estate, tmp_path: Path) -> None:
    hosts = lab_hosts(estate.lab.inventory)
    inventory = site_inventory(tmp_path / "inv.yaml", {"alpha": hosts[:30], "nowhere": hosts[30:45]})
    with worker(redis.url(), "alpha", {**estate.creds(), **broker_env(redis)}, tmp_path / "alpha.log"):
        started = time.monotonic()
        done = _scan(
            "-i",
            str(inventory),
            "--broker",
            redis.url(),
            "--site-timeout",
            "3",
            "-o",
            str(tmp_path / "r.json"),
            env=broker_env(redis),
        )
        elapsed = time.monotonic() - started
    assert done.returncode == 3, done.stderr  # incomplete: the site's hosts were not read
    assert elapsed < 60
    report = report_hosts(tmp_path / "r.json")
    for host in hosts[30:45]:
        error = report[str(host["name"])]["error"]
        assert error is not None and (error["stage"], error["reason"]) == ("site", "no_collector")
    assert all(report[str(h["name"])]["error"] is None for h in hosts[:30])
    sites = json.loads((tmp_path / "r.json").read_text())["summary"]["sites"]
    assert sites["alpha"] == {"hosts": 30, "read": 30, "coverage": 1.0}
    assert sites["nowhere"] == {"hosts": 15, "read": 0, "coverage": 0.0}
    assert "site nowhere: no worker" in done.stderr
    # The site's queue was emptied: a worker started later does not run this scan's batch.
    assert redis.cli("LLEN", "natt-audit.site.nowhere").strip() == "0"


def test_wrong_broker_password_exits_2_before_queueing(redis: RunningRedis, estate: Estate, tmp_path: Path) -> None:
    inventory = site_inventory(tmp_path / "inv.yaml", {"wrongpw": lab_hosts(estate.lab.inventory)[:5]})
    done = _scan(
        "-i",
        str(inventory),
        "--broker",
        redis.url(),
        "-o",
        str(tmp_path / "r.json"),
        env={"NATT_AUDIT_BROKER_PASSWORD": "not-the-password"},
    )
    assert done.returncode == 2
    assert "refused the password" in done.stderr
    assert "not-the-password" not in done.stderr + done.stdout
    assert not (tmp_path / "r.json").exists()
    assert redis.cli("EXISTS", "natt-audit.site.wrongpw").strip() == "0"


def test_password_in_broker_url_is_refused(redis: RunningRedis, tmp_path: Path) -> None:
    for url, env in (
        (f"redis://:{redis.password}@{redis.host}:{redis.port}/0", {}),
        (None, {"NATT_AUDIT_BROKER": f"redis://user:{redis.password}@{redis.host}:{redis.port}/0"}),
    ):
        args = ["workers"] + (["--broker", url] if url else [])
        done = run_cli(*args, env=env)
        assert done.returncode == 2, done.stderr
        assert redis.password not in done.stderr + done.stdout
        assert "password" in done.stderr


def _task_ids(redis: RunningRedis, queue: str, want: int, timeout: float = 30) -> list[str]:
    """Wait until `want` batches sit in `queue`; return their task ids, biggest batch first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = redis.cli("LRANGE", queue, "0", "-1").split("\n")
        messages = [json.loads(line) for line in raw if line.startswith("{")]
        if len(messages) >= want:
            # Celery's message: task id in the headers, [args, kwargs, embed] as base64 JSON in the body.
            sizes = {
                m["headers"]["id"]: len(json.loads(base64.b64decode(m["body"]))[0][0]["targets"]) for m in messages
            }
            return sorted(sizes, key=lambda task_id: -sizes[task_id])
        time.sleep(0.1)
    raise AssertionError(f"{want} batches never reached {queue}")


def test_malformed_results_become_bad_result(redis: RunningRedis, estate: Estate, tmp_path: Path) -> None:
    hosts = lab_hosts(estate.lab.inventory)
    # "evil" has no worker: this test answers its two batches (100 + 20 hosts) in the result backend.
    inventory = site_inventory(tmp_path / "inv.yaml", {"fine": hosts[:20], "evil": hosts[20:140]})
    outcome: dict[str, subprocess.CompletedProcess[str]] = {}

    def scan() -> None:
        outcome["scan"] = _scan(
            "-i",
            str(inventory),
            "--broker",
            redis.url(),
            "--site-timeout",
            "30",
            "-o",
            str(tmp_path / "r.json"),
            env=broker_env(redis),
        )

    with worker(redis.url(), "fine", {**estate.creds(), **broker_env(redis)}, tmp_path / "fine.log"):
        thread = threading.Thread(target=scan)
        thread.start()
        first, second = _task_ids(redis, "natt-audit.site.evil", 2)
        # Batch 1: not JSON at all (a pickle's opening bytes); batch 2: one good entry, one host
        # claimed twice, one malformed entry, one host that is not in the batch, the rest missing.
        redis.cli("SET", f"celery-task-meta-{first}", "\x80\x04\x95 not json")
        good = {
            "target": {"name": hosts[120]["name"], "address": "203.0.113.9", "port": 1},
            "requests": 5,
            "os": {"version": "10.0.19045", "build": 19045, "service_pack": 0, "caption": "Windows 10"},
            "keys": [],
        }
        result = {
            "status": "SUCCESS",
            "task_id": second,
            "result": {
                "site": "evil",
                "worker": "evil@nowhere",
                "observations": [
                    good,
                    good,
                    {"target": "\x1b[31mred"},
                    {**good, "target": {**good["target"], "name": "x"}},
                ],
            },
        }
        redis.cli("SET", f"celery-task-meta-{second}", json.dumps(result))
        thread.join(120)
    done = outcome["scan"]
    assert done.returncode == 3, done.stderr
    report = report_hosts(tmp_path / "r.json")
    assert len(report) == 140
    assert all(report[str(h["name"])]["error"] is None for h in hosts[:20])  # the scan carried on
    taken = report[str(hosts[120]["name"])]
    assert taken["error"] is None and taken["os"]["version"] == "10.0.19045"
    assert taken["address"] == hosts[120]["address"]  # the coordinator's own target, not the worker's
    for host in hosts[20:120] + hosts[121:140]:
        error = report[str(host["name"])]["error"]
        assert (error["stage"], error["reason"]) == ("site", "bad_result"), host["name"]
    assert "\x1b" not in done.stderr
