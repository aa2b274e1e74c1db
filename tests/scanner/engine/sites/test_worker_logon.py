"""A site worker proves its account once per scan: a wrong password never costs a logon per batch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from scanner.core.models import CollectOptions, Credentials
from scanner.engine.sites.messages import Batch, Limits
from scanner.engine.sites.worker import WorkerSettings, _Logons, run_batch
from scanner.inputs.inventory import load_inventory
from tests.peers.lab import RunningLab, start_lab

ESTATE = Path(__file__).resolve().parents[2] / "cli" / "data" / "estate_lockout.yaml"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    with start_lab(ESTATE, tmp_path_factory.mktemp("worker-lab"), stats=True) as running:
        yield running


class _Backend:
    """Stands in for Celery's result backend: the heartbeat's progress reports are dropped."""

    def store_result(self, *args: Any) -> None:
        del args


def _task(task_id: str) -> Any:
    return SimpleNamespace(request=SimpleNamespace(id=task_id, hostname="paris@test"), backend=_Backend())


def test_a_wrong_password_costs_at_most_three_logons_across_a_scans_batches(lab: RunningLab) -> None:
    targets = [t for t in load_inventory(lab.inventory).targets if t.name.startswith("lk-")][:30]
    assert len(targets) == 30
    settings = WorkerSettings(
        site="default",
        credentials=Credentials(username="LAB\\auditor", password=SecretStr("not-the-password")),
        concurrency=8,
    )
    logons = _Logons(settings)
    before = lab.stats()["logons"]["by_host"]
    limits = Limits.of(CollectOptions(host_timeout=5, connect_timeout=2))
    results = []
    for n in range(3):  # three batches of one scan, as the coordinator sends them
        batch = Batch(scan="scan-1", site="default", targets=tuple(targets[n * 10 : n * 10 + 10]), limits=limits,
                      heartbeat=30)  # fmt: skip
        results.append(run_batch(_task(f"t{n}"), batch.model_dump(mode="json"), settings, logons))
    after = lab.stats()["logons"]["by_host"]
    failures = sum(counts["failures"] - before.get(name, {}).get("failures", 0) for name, counts in after.items())
    assert failures <= 3
    reasons = [o["error"]["reason"] for r in results for o in r["observations"]]
    assert len(reasons) == 30 and reasons.count("not_attempted") >= 27
