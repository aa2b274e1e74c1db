"""A site's workers share one lockout breaker per account in the broker's Redis.

docs/sites.md#reliability and docs/authentication.md#lockout-safety: a worker proves its account
once per scan (never once per batch), and every worker of the site counts the same rejections and
logs on unproven only while it holds the site's probe lease, so a wrong password costs at most
`max_auth_failures` rejected logons across all of them. The batches run here through `run_batch`
on threads, each worker with its own `_Logons` and Redis client, as two worker processes would.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis as redis_py
from pydantic import SecretStr

from scanner.core.models import CollectOptions, Credentials, Target
from scanner.engine.sites.broker import Broker
from scanner.engine.sites.logonstate import KEY_PREFIX, account_id, logon_client, redis_logons
from scanner.engine.sites.messages import Batch, Limits
from scanner.engine.sites.worker import WorkerSettings, _Logons, run_batch
from scanner.inputs.inventory import load_inventory
from tests.peers.lab import RunningLab, start_lab
from tests.peers.redis_server import RunningRedis, start_redis

ESTATE = Path(__file__).resolve().parents[2] / "cli" / "data" / "estate_lockout.yaml"
USER = "LAB\\auditor"
RIGHT = "Lab-Passw0rd!"  # the lab's published account (docs/lab.md)
WRONG = "not-the-password"
LIMITS = Limits.of(CollectOptions(host_timeout=5, connect_timeout=2))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    with start_lab(ESTATE, tmp_path_factory.mktemp("worker-lab"), stats=True) as running:
        yield running


@pytest.fixture
def fresh_lab(tmp_path: Path) -> Iterator[RunningLab]:
    """A lab of its own, so its peak of logons in progress is this test's."""
    with start_lab(ESTATE, tmp_path / "lab", stats=True) as running:
        yield running


class _Backend:
    """Stands in for Celery's result backend: the heartbeat's progress reports are dropped."""

    def store_result(self, *args: Any) -> None:
        del args


def _task(task_id: str) -> Any:
    return SimpleNamespace(request=SimpleNamespace(id=task_id, hostname="paris@test"), backend=_Backend())


def _plain(lab: RunningLab, count: int) -> list[Target]:
    targets = [t for t in load_inventory(lab.inventory).targets if t.name.startswith("lk-")][:count]
    assert len(targets) == count
    return targets


def _worker(
    server: RunningRedis, password: str, name: str, *, patience: float = 30.0
) -> tuple[WorkerSettings, _Logons]:
    """Return one worker of site paris: its settings and its scan logons, sharing `server`'s Redis."""
    settings = WorkerSettings(
        site="paris",
        credentials=Credentials(username=USER, password=SecretStr(password)),
        concurrency=8,
        logon_patience=patience,
    )
    client = logon_client(Broker(url=server.url(), password=SecretStr(server.password)))
    states = redis_logons(client, site="paris", credentials=settings.credentials, worker=name)
    return settings, _Logons(settings, states)


def _batch(scan: str, targets: list[Target]) -> dict[str, Any]:
    return Batch(scan=scan, site="paris", targets=tuple(targets), limits=LIMITS, heartbeat=30).model_dump(mode="json")


def _run_concurrently(jobs: list[tuple[WorkerSettings, _Logons, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run each worker's batch on its own thread, all at once; return their results in order."""
    results: list[dict[str, Any] | None] = [None] * len(jobs)

    def run(n: int) -> None:
        settings, logons, payload = jobs[n]
        results[n] = run_batch(_task(f"t{n}"), payload, settings, logons)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(result is not None for result in results)
    return [result for result in results if result is not None]


def _failures(lab: RunningLab, before: dict[str, dict[str, int]]) -> int:
    after = lab.stats()["logons"]["by_host"]
    return sum(counts["failures"] - before.get(name, {}).get("failures", 0) for name, counts in after.items())


def _reasons(results: list[dict[str, Any]]) -> list[str]:
    return [
        "ok" if o["error"] is None else f"{o['error']['stage']}/{o['error']['reason']}"
        for r in results
        for o in r["observations"]
    ]


def _key(scan: str, name: str) -> str:
    account = account_id(Credentials(username=USER, password=SecretStr(RIGHT)))
    return f"{KEY_PREFIX}:{scan}:paris:{account}:{name}"


def test_a_wrong_password_costs_at_most_three_logons_across_a_scans_batches(
    redis: RunningRedis, lab: RunningLab
) -> None:
    targets = _plain(lab, 30)
    settings, logons = _worker(redis, WRONG, "w1")
    before = lab.stats()["logons"]["by_host"]
    scan = str(uuid.uuid4())
    results = []
    for n in range(3):  # three batches of one scan, as the coordinator sends them
        results.append(run_batch(_task(f"t{n}"), _batch(scan, targets[n * 10 : n * 10 + 10]), settings, logons))
    assert _failures(lab, before) <= 3
    reasons = _reasons(results)
    assert len(reasons) == 30 and reasons.count("auth/not_attempted") >= 27


def test_two_workers_with_a_wrong_password_cost_at_most_three_logons_in_all(
    redis: RunningRedis, lab: RunningLab
) -> None:
    targets = _plain(lab, 60)
    scan = str(uuid.uuid4())
    jobs = [(*_worker(redis, WRONG, f"w{n}"), _batch(scan, targets[n * 30 : n * 30 + 30])) for n in range(2)]
    before = lab.stats()["logons"]["by_host"]
    results = _run_concurrently(jobs)
    failures = _failures(lab, before)
    reasons = _reasons(results)
    assert 1 <= failures <= 3  # without the shared breaker: 3 per worker, 6 (the commit before this test)
    assert reasons.count("auth/unauthorized") == failures
    assert reasons.count("auth/not_attempted") == 60 - failures
    # What the workers left in the broker: host names and a lease, no secret; a day to live.
    client = redis_py.Redis(host=redis.host, port=redis.port, password=redis.password)
    rejected = {name.decode() for name in client.smembers(_key(scan, "rejected"))}
    assert len(rejected) == failures and rejected <= {t.name for t in targets}
    assert 0 < client.ttl(_key(scan, "rejected")) <= 24 * 3600
    for key in client.scan_iter(f"{KEY_PREFIX}:{scan}:*"):
        dump = repr(client.type(key)) + repr(client.dump(key))
        assert WRONG not in dump and "auditor" not in dump.lower()


def test_two_workers_with_the_right_password_read_every_host_in_parallel_once_proven(
    redis: RunningRedis, fresh_lab: RunningLab
) -> None:
    targets = _plain(fresh_lab, 60)
    scan = str(uuid.uuid4())
    jobs = [(*_worker(redis, RIGHT, f"w{n}"), _batch(scan, targets[n * 30 : n * 30 + 30])) for n in range(2)]
    results = _run_concurrently(jobs)
    assert _reasons(results) == ["ok"] * 60
    logons = fresh_lab.stats()["logons"]
    assert logons["failures"] == 0 and logons["successes"] == 60
    # One probe at a time across both workers, then each fans out: more than one logon at once.
    assert logons["peak_concurrent"] > 2, logons


def test_a_lease_left_by_a_dead_worker_delays_the_scan_but_does_not_block_it(
    redis: RunningRedis, lab: RunningLab
) -> None:
    targets = _plain(lab, 20)
    scan = str(uuid.uuid4())
    client = redis_py.Redis(host=redis.host, port=redis.port, password=redis.password)
    assert client.set(_key(scan, "lease"), "paris@dead.1/00000000", nx=True, px=2000)
    jobs = [(*_worker(redis, RIGHT, f"w{n}"), _batch(scan, targets[n * 10 : n * 10 + 10])) for n in range(2)]
    started = time.monotonic()
    results = _run_concurrently(jobs)
    elapsed = time.monotonic() - started
    assert _reasons(results) == ["ok"] * 20
    assert elapsed >= 1.5, elapsed  # nobody logged on before the dead worker's lease lapsed


def test_a_logon_noted_by_a_dead_worker_counts_as_a_rejection(redis: RunningRedis, lab: RunningLab) -> None:
    targets = _plain(lab, 10)
    scan = str(uuid.uuid4())
    client = redis_py.Redis(host=redis.host, port=redis.port, password=redis.password)
    # A worker died mid-probe: its note is past its deadline and nobody recorded the outcome.
    client.zadd(_key(scan, "notes"), {"paris@dead.1/00000000 lk-999": time.time() - 1})
    settings, logons = _worker(redis, WRONG, "w1")
    before = lab.stats()["logons"]["by_host"]
    result = run_batch(_task("t"), _batch(scan, targets), settings, logons)
    assert _failures(lab, before) == 2  # 3 - the unknown outcome
    assert _reasons([result]).count("auth/not_attempted") == 8


def _wait_for_lease(client: redis_py.Redis, key: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while client.get(key) is None:
        assert time.monotonic() < deadline, "no worker took the probe lease"
        time.sleep(0.002)


def test_redis_lost_mid_probe_stops_the_unproven_worker_without_another_logon(lab: RunningLab, tmp_path: Path) -> None:
    targets = _plain(lab, 30)
    scan = str(uuid.uuid4())
    with start_redis(tmp_path / "redis") as server:
        settings, logons = _worker(server, WRONG, "w1", patience=2.0)
        client = redis_py.Redis(host=server.host, port=server.port, password=server.password)
        before = lab.stats()["logons"]["by_host"]
        results: list[dict[str, Any]] = []
        thread = threading.Thread(
            target=lambda: results.extend(_run_concurrently([(settings, logons, _batch(scan, targets))]))
        )
        thread.start()
        _wait_for_lease(client, _key(scan, "lease"))
        server.process.terminate()  # the broker goes away while the first probe is in flight
        server.process.wait(10)
        started = time.monotonic()
        at_loss = _failures(lab, before)
        thread.join(60)
        waited = time.monotonic() - started
    failures = _failures(lab, before)
    reasons = _reasons(results)
    # Unproven, one logon at a time: at most the one in flight when the broker went, none after.
    assert failures <= at_loss + 1 and failures < 3, (at_loss, failures)
    assert reasons.count("auth/unauthorized") == failures
    assert reasons.count("site/no_logon_state") == 30 - failures, sorted(set(reasons))
    assert 1.5 <= waited < 15, waited  # the bounded wait, then the remaining hosts are reported
    unavailable = next(o for o in results[0]["observations"] if o["error"]["reason"] == "no_logon_state")
    assert "not contacted, so the account is not locked out" in unavailable["error"]["message"]


def test_a_proven_worker_needs_no_shared_state(lab: RunningLab, tmp_path: Path) -> None:
    targets = _plain(lab, 30)
    scan = str(uuid.uuid4())
    with start_redis(tmp_path / "redis") as server:
        settings, logons = _worker(server, RIGHT, "w1", patience=2.0)
        proof = run_batch(_task("t0"), _batch(scan, targets[:5]), settings, logons)
        assert _reasons([proof]) == ["ok"] * 5
    # The broker is gone; this worker proved the account already, so it reads at full width.
    result = run_batch(_task("t1"), _batch(scan, targets[5:]), settings, logons)
    assert _reasons([result]) == ["ok"] * 25


@pytest.mark.parametrize(("worker_limit", "scan_limit", "most"), [(3, 1, 1), (2, 5, 2), (3, None, 3)])
def test_a_scan_may_lower_a_workers_breaker_but_never_raise_it(
    redis: RunningRedis, fresh_lab: RunningLab, worker_limit: int, scan_limit: int | None, most: int
) -> None:
    targets = _plain(fresh_lab, 12)
    settings, _ = _worker(redis, WRONG, f"w-{uuid.uuid4()}")
    settings = dataclasses.replace(settings, concurrency=1, max_auth_failures=worker_limit)
    client = logon_client(Broker(url=redis.url(), password=SecretStr(redis.password)))
    logons = _Logons(settings, redis_logons(client, site="paris", credentials=settings.credentials, worker="w"))
    payload = Batch(
        scan=str(uuid.uuid4()), site="paris", targets=tuple(targets), limits=LIMITS, heartbeat=30,
        max_auth_failures=scan_limit,
    ).model_dump(mode="json")  # fmt: skip
    before = fresh_lab.stats()["logons"]["by_host"]
    result = run_batch(_task("t-limit"), payload, settings, logons)
    logons.close()
    assert _failures(fresh_lab, before) == most  # one host at a time: exactly the limit is spent
    assert _reasons([result]).count("auth/not_attempted") == len(targets) - most


def test_a_batch_delivered_again_never_tries_a_host_that_rejected_the_account_twice(
    redis: RunningRedis, fresh_lab: RunningLab
) -> None:
    targets = _plain(fresh_lab, 12)
    scan = str(uuid.uuid4())
    before = fresh_lab.stats()["logons"]["by_host"]
    # The first delivery: its worker got two rejections, then died (its batch is handed out again).
    first, first_logons = _worker(redis, WRONG, "dead")
    run_batch(_task("t-first"), _batch(scan, targets[:2]), dataclasses.replace(first, concurrency=1), first_logons)
    first_logons.close()
    assert _failures(fresh_lab, before) == 2
    # The second delivery, on another worker: the same two hosts, and the rest of the batch.
    second, second_logons = _worker(redis, WRONG, "alive")
    again = run_batch(
        _task("t-again"), _batch(scan, targets), dataclasses.replace(second, concurrency=1), second_logons
    )
    second_logons.close()
    # One new host, the third distinct one, trips the breaker: 3 failures in all, never 5.
    assert _failures(fresh_lab, before) == 3
    by_host = {o["target"]["name"]: o for o in again["observations"]}
    for target in targets[:2]:
        assert by_host[target.name]["error"]["reason"] == "unauthorized"
        assert "not tried twice" in by_host[target.name]["error"]["message"]
    assert _reasons([again]).count("auth/not_attempted") == len(targets) - 3
