"""Two workers of one site with a wrong password: one failed Kerberos pre-authentication per scan, not one each.

docs/sites.md#reliability: the site's workers share the account's logon state in the broker, so the
AS exchange is made under the site's probe lease and a refused TGT is never tried again by another
worker in the same scan. Against the real Samba KDC with a lockout threshold of 3, two nightly
scans with a stale password leave the account usable (with a breaker per worker, the second scan
would lock it: 2 workers x 2 scans = 4 failed pre-authentications).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from scanner.core.models import CollectOptions, Credentials, Target
from scanner.engine.sites.broker import Broker
from scanner.engine.sites.logonstate import logon_client, redis_logons
from scanner.engine.sites.messages import Batch, Limits
from scanner.engine.sites.worker import WorkerSettings, _Logons, run_batch
from scanner.inputs.inventory import load_inventory
from tests.peers.kerberos_lab import KerberosLab, member_names
from tests.peers.redis_server import RunningRedis, start_redis
from tests.peers.samba_dc import LockoutPolicy, SambaDC

AS_EXCHANGE = re.compile(r"Getting initial credentials for ")


@pytest.fixture
def lockout(samba_dc: SambaDC) -> Iterator[LockoutPolicy]:
    """Lock an account after 3 bad passwords for one test; lockout off again afterwards."""
    policy = samba_dc.set_lockout(threshold=3, duration_minutes=30, reset_minutes=30)
    try:
        yield policy
    finally:
        samba_dc.set_lockout(threshold=0, duration_minutes=30, reset_minutes=30)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RunningRedis]:
    with start_redis(tmp_path / "redis") as server:
        yield server


class _Backend:
    def store_result(self, *args: Any) -> None:
        del args


def _task(task_id: str) -> Any:
    return SimpleNamespace(request=SimpleNamespace(id=task_id, hostname="paris@test"), backend=_Backend())


def _scan_on(
    workers: list[tuple[WorkerSettings, _Logons]], scan: str, targets: Sequence[Target], limits: Limits
) -> list[dict[str, Any]]:
    """Run one batch of 5 hosts per worker, all at once, as a scan's first batches; return the results."""
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def run(n: int, settings: WorkerSettings, logons: _Logons) -> None:
        hosts = tuple(targets[n * 5 : n * 5 + 5])
        batch = Batch(scan=scan, site="paris", targets=hosts, limits=limits, heartbeat=30)
        result = run_batch(_task(f"t{n}"), batch.model_dump(mode="json"), settings, logons)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run, args=(n, *worker)) for n, worker in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def test_two_workers_with_a_wrong_kerberos_password_make_one_as_exchange_per_scan(
    krb_lab: KerberosLab,
    samba_dc: SambaDC,
    broker: RunningRedis,
    lockout: LockoutPolicy,
    tmp_path: Path,
    ccache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert lockout.threshold == 3
    user = samba_dc.create_user("kworkers", "Kworkers-Passw0rd!")
    trace = tmp_path / "krb5-trace.log"
    monkeypatch.setenv("KRB5_TRACE", str(trace))
    targets = load_inventory(krb_lab.inventory(tmp_path / "hosts.yaml", member_names()[:10], "kerberos")).targets
    limits = Limits.of(CollectOptions(host_timeout=10, connect_timeout=3))
    before = krb_lab.counters()

    def workers() -> list[tuple[WorkerSettings, _Logons]]:
        made = []
        for n in range(2):
            settings = WorkerSettings(
                site="paris",
                credentials=Credentials(username=f"LAB\\{user.name}", password=SecretStr("Wrong-Passw0rd!")),
                concurrency=4,
            )
            client = logon_client(Broker(url=broker.url(), password=SecretStr(broker.password)))
            states = redis_logons(client, site="paris", credentials=settings.credentials, worker=f"w{n}")
            made.append((settings, _Logons(settings, states)))
        return made

    for night in range(2):  # two nightly scans with the stale password, two workers each
        results = _scan_on(workers(), str(uuid.uuid4()), targets, limits)
        reasons = [o["error"]["reason"] for r in results for o in r["observations"]]
        assert reasons == ["preauth_failed"] * 10, (night, reasons)
        assert len(AS_EXCHANGE.findall(trace.read_text(encoding="utf-8"))) == night + 1  # one per scan

    assert krb_lab.counters()["connections"] == before["connections"]  # no host was contacted
    assert samba_dc.kinit(user.principal, user.password, ccache).ok  # 2 failures: the account is not locked
