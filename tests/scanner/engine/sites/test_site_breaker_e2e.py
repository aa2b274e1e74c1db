"""One lockout breaker per site account, end to end: two real workers, one real broker, the real CLI.

docs/sites.md#reliability and docs/authentication.md#lockout-safety: the workers of a site share
the account's logon state in the broker, so with a wrong password the account sees at most
`max_auth_failures` rejected logons in total, however many workers the site runs; with the right
one both workers read their hosts, in parallel once each proved the account.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.peers.lab import RunningLab, start_lab
from tests.peers.redis_server import RunningRedis
from tests.scanner.engine.sites.conftest import LAB_USER, broker_env
from tests.support.cliproc import LAB_PASSWORD, run_cli
from tests.support.sites import report_hosts, site_inventory, worker, write_estate

pytestmark = pytest.mark.slow

HOSTS = 240  # three batches of 100: both workers get one at once


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """240 generated hosts at 20 ms per request, the lab counting every logon (docs/lab.md#counters)."""
    folder = tmp_path_factory.mktemp("breaker-estate")
    path = write_estate(
        folder / "estate.yaml", prefix="b-", count=HOSTS, username=LAB_USER, password=LAB_PASSWORD, latency_ms=20
    )
    with start_lab(path, folder / "lab", stats=True) as lab:
        yield lab


def _wait_for_workers(redis: RunningRedis, site: str, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = run_cli("workers", "--broker", redis.url(), "-f", "json", "--timeout", "1", env=broker_env(redis))
        if done.stdout and len(json.loads(done.stdout)["sites"].get(site, [])) >= count:
            return
        time.sleep(0.5)
    raise AssertionError(f"{count} workers of {site} did not come up")


def _scan_with_two_workers(
    redis: RunningRedis, lab: RunningLab, tmp_path: Path, password: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, object]], dict[str, object]]:
    """Run a distributed scan of the lab on two workers of one site; return it, its hosts and the logons."""
    inventory = site_inventory(tmp_path / "inv.yaml", {"paris": lab.inventory})
    env = {"NATT_AUDIT_USERNAME": LAB_USER, "NATT_AUDIT_PASSWORD": password, **broker_env(redis)}
    before = lab.stats()["logons"]
    with ExitStack() as stack:
        for n in range(2):
            stack.enter_context(
                worker(redis.url(), "paris", env, tmp_path / f"worker-{n}.log", args=["--concurrency", "8"])
            )
        _wait_for_workers(redis, "paris", 2)
        report = tmp_path / "report.json"
        done = run_cli(
            "scan", "-i", str(inventory), "--broker", redis.url(), "--no-history", "-f", "json", "-o", str(report),
            env=broker_env(redis), timeout=300,
        )  # fmt: skip
    after = lab.stats()["logons"]
    logons = {key: after[key] - before[key] for key in ("attempts", "failures", "successes")}
    logons["peak_concurrent"] = after["peak_concurrent"]
    return done, report_hosts(report), logons


def test_a_wrong_password_costs_at_most_three_logons_across_two_workers(
    redis: RunningRedis, counted: RunningLab, tmp_path: Path
) -> None:
    done, hosts, logons = _scan_with_two_workers(redis, counted, tmp_path, "not-the-password")
    # The coordinator says the site's breaker stopped it, as a local scan says its own (exit 2).
    assert done.returncode == 2, done.stderr
    assert re.search(
        r"site paris: credentials rejected by \d+ hosts; stopped so the account is not locked out", done.stderr
    )
    assert "although others accepted it" not in done.stderr
    assert logons["failures"] <= 3 and logons["successes"] == 0, logons
    reasons = [str(host["error"]["reason"]) for host in hosts.values()]  # type: ignore[index]
    assert len(reasons) == HOSTS
    assert reasons.count("unauthorized") == logons["failures"]
    assert reasons.count("not_attempted") == HOSTS - logons["failures"], sorted(set(reasons))


def test_the_right_password_reads_every_host_on_both_workers(
    redis: RunningRedis, counted: RunningLab, tmp_path: Path
) -> None:
    done, hosts, logons = _scan_with_two_workers(redis, counted, tmp_path, LAB_PASSWORD)
    assert done.returncode in (0, 1), done.stderr
    assert all(host["error"] is None for host in hosts.values()), [h["error"] for h in hosts.values() if h["error"]]
    assert len(hosts) == HOSTS and logons["failures"] == 0 and logons["successes"] == HOSTS, logons
    assert logons["peak_concurrent"] > 2, logons  # each worker fans out once its account is proven
    # The report does not say which worker read a host; their logs do: both read batches.
    served = [path.read_text(encoding="utf-8") for path in sorted(tmp_path.glob("worker-*.log"))]
    assert len(served) == 2 and all("batch of" in text for text in served), served
