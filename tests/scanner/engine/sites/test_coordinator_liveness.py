"""A batch whose coordinator is gone is not read: the coordinator's sign of life in a real Redis.

docs/sites.md#reliability: the coordinator keeps `natt-audit:run:<run id>:alive` while it collects
(scanner/engine/sites/liveness.py); a worker marks a batch of a run without it revoked and reads
none of its hosts, and stops starting hosts of a running batch once the key is gone.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis as redis_py
from celery.exceptions import Ignore
from pydantic import SecretStr

from scanner.core.models import CollectOptions, Credentials
from scanner.engine.sites.broker import Broker
from scanner.engine.sites.liveness import Beacon, alive_key, coordinator_alive, liveness_ttl
from scanner.engine.sites.logonstate import logon_client, redis_logons
from scanner.engine.sites.messages import Batch, Limits
from scanner.engine.sites.worker import WorkerSettings, _Logons, run_batch
from scanner.inputs.inventory import load_inventory
from tests.peers.lab import RunningLab, start_lab
from tests.peers.redis_server import RunningRedis
from tests.scanner.engine.sites.conftest import LAB_USER, broker_env
from tests.support.cliproc import CLI, LAB_PASSWORD, REPO, cli_env
from tests.support.sites import site_inventory, worker, write_estate

pytestmark = pytest.mark.slow

LIMITS = Limits.of(CollectOptions(host_timeout=10, connect_timeout=2))


@contextlib.contextmanager
def _lab(folder: Path, prefix: str, count: int, latency_ms: int) -> Iterator[RunningLab]:
    """Serve `count` generated hosts answering the lab's account, `latency_ms` per request, counting logons."""
    path = write_estate(
        folder / "estate.yaml", prefix=prefix, count=count, username=LAB_USER, password=LAB_PASSWORD,
        latency_ms=latency_ms,
    )  # fmt: skip
    with start_lab(path, folder / "lab", stats=True) as lab:
        yield lab


@pytest.fixture(scope="module")
def slow_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """40 hosts at 50 ms a request: one at a time, a batch of them takes seconds."""
    with _lab(tmp_path_factory.mktemp("liveness"), "lv-", 40, 50) as lab:
        yield lab


class _Backend:
    """Stands in for Celery's result backend: keeps what the worker reported."""

    def __init__(self) -> None:
        self.revoked: list[str] = []

    def store_result(self, *args: Any) -> None:
        del args

    def mark_as_revoked(self, task_id: str, reason: str = "") -> None:
        self.revoked.append(task_id)


def _client(server: RunningRedis) -> redis_py.Redis:
    return logon_client(Broker(url=server.url(), password=SecretStr(server.password)))


def _worker(server: RunningRedis) -> tuple[WorkerSettings, _Logons]:
    settings = WorkerSettings(
        site="paris", credentials=Credentials(username=LAB_USER, password=SecretStr(LAB_PASSWORD)), concurrency=1
    )
    states = redis_logons(_client(server), site="paris", credentials=settings.credentials, worker=f"w-{uuid.uuid4()}")
    return settings, _Logons(settings, states)


def _run(server: RunningRedis, lab: RunningLab, run_id: str, hosts: int) -> tuple[Any, _Backend]:
    """Run one batch of `hosts` lab hosts of run `run_id` as a worker does; return (result or Ignore, backend)."""
    settings, logons = _worker(server)
    targets = tuple(load_inventory(lab.inventory).targets[:hosts])
    payload = Batch(scan=run_id, site="paris", targets=targets, limits=LIMITS, heartbeat=0.2, liveness=True).model_dump(
        mode="json"
    )
    backend = _Backend()
    task = SimpleNamespace(request=SimpleNamespace(id=f"task-{run_id}", hostname="paris@test"), backend=backend)
    client = _client(server)
    try:
        return run_batch(task, payload, settings, logons, alive=lambda run: coordinator_alive(client, run)), backend
    except Ignore as ignored:
        return ignored, backend
    finally:
        logons.close()


def _attempts(lab: RunningLab) -> int:
    return int(lab.stats()["logons"]["attempts"])


def test_the_beacon_lives_while_renewed_and_is_gone_at_the_end(redis: RunningRedis) -> None:
    client = _client(redis)
    run_id = str(uuid.uuid4())
    beacon = Beacon(client, run_id, liveness_ttl(3))  # the shortest: 10 s
    assert coordinator_alive(client, run_id) is False
    beacon.beat()
    assert coordinator_alive(client, run_id) is True
    assert 9_000 < int(client.pttl(alive_key(run_id))) <= 10_000
    beacon.end()
    assert coordinator_alive(client, run_id) is False


def test_an_unreachable_redis_cannot_tell() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    client = redis_py.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    assert coordinator_alive(client, "any") is None


def test_a_batch_of_a_gone_coordinator_is_revoked_and_no_host_is_contacted(
    redis: RunningRedis, slow_lab: RunningLab
) -> None:
    before = _attempts(slow_lab)
    result, backend = _run(redis, slow_lab, str(uuid.uuid4()), 10)  # no key: its coordinator is gone
    assert isinstance(result, Ignore)
    assert backend.revoked and _attempts(slow_lab) == before


def test_a_batch_of_a_live_coordinator_is_read(redis: RunningRedis, slow_lab: RunningLab) -> None:
    run_id = str(uuid.uuid4())
    Beacon(_client(redis), run_id, 30).beat()
    result, backend = _run(redis, slow_lab, run_id, 5)
    assert not backend.revoked
    assert [o["error"] for o in result["observations"]] == [None] * 5


def test_a_running_batch_starts_no_new_host_once_the_coordinator_is_gone(
    redis: RunningRedis, slow_lab: RunningLab
) -> None:
    run_id = str(uuid.uuid4())
    client = _client(redis)
    Beacon(client, run_id, 30).beat()
    killer = threading.Timer(1.0, lambda: client.delete(alive_key(run_id)))  # as if it died and its key lapsed
    killer.start()
    started = time.monotonic()
    result, _ = _run(redis, slow_lab, run_id, 40)
    killer.cancel()
    read = len(result["observations"])
    # One host at a time at ~0.2 s each: about 5 read before the key went, and one heartbeat (0.2 s) later
    # the worker starts no more; all 40 would take about 8 s.
    assert 1 <= read < 20, read
    assert time.monotonic() - started < 6


@pytest.fixture(scope="module")
def slower_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """300 hosts at 100 ms a request: three batches, each tens of seconds on one worker reading one at a time."""
    with _lab(tmp_path_factory.mktemp("liveness-e2e"), "lk9-", 300, 100) as lab:
        yield lab


def test_a_coordinator_killed_outright_leaves_no_work_behind(
    redis: RunningRedis, slower_lab: RunningLab, tmp_path: Path
) -> None:
    inventory = site_inventory(tmp_path / "inv.yaml", {"paris": slower_lab.inventory})
    creds = {"NATT_AUDIT_USERNAME": LAB_USER, "NATT_AUDIT_PASSWORD": LAB_PASSWORD, **broker_env(redis)}
    log = tmp_path / "worker.log"
    before = _attempts(slower_lab)
    with worker(redis.url(), "paris", creds, log, args=["--concurrency", "1"]):
        coordinator = subprocess.Popen(
            [*CLI, "scan", "-i", str(inventory), "--broker", redis.url(), "--site-timeout", "3", "--no-history",
             "-f", "json", "-o", str(tmp_path / "r.json")],
            env=cli_env(broker_env(redis)), cwd=REPO, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while _attempts(slower_lab) == before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _attempts(slower_lab) > before, "the worker never started the scan"
        coordinator.send_signal(signal.SIGKILL)  # no revoke, no clean-up: its batches stay queued
        coordinator.wait(10)
        # Its sign of life lapses within liveness_ttl(3) = 10 s; the worker then starts no new host.
        settled, last, stable_since = time.monotonic() + 40, -1, time.monotonic()
        while time.monotonic() < settled:
            now = _attempts(slower_lab)
            if now != last:
                last, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since > 4:
                break
            time.sleep(0.5)
        spent = _attempts(slower_lab) - before
    text = log.read_text(encoding="utf-8")
    assert "is gone: no new host of this batch is started" in text, text
    # Without the sign of life the worker read all 300 hosts (about 2 minutes) for nobody.
    assert spent < 100, spent
