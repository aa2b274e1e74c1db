"""run_scan builds its report through the same assembly the tests use, and assesses each host once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

import rules.evaluate
import scanner.engine.run
from reports.build import ReportAssembly
from reports.hosts import HostBuffer
from reports.hostspill import SpilledHosts
from rules.evaluate import evaluate
from rules.loader import resolve_policies
from scanner.core.exitcodes import ExitCode
from scanner.core.models import Credentials, Observation
from scanner.core.semantics import Setting, assess
from scanner.engine.run import ScanOutcome, ScanRequest, run_scan
from scanner.inputs.inventory import Inventory
from tests.support.sample_report import SCAN, sample_inputs

BASELINE = resolve_policies([])


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count assess() calls per host name, wherever the engine or the rules make them."""
    seen: Counter[str] = Counter()

    def counting(observation: Observation) -> Setting | None:
        seen[observation.target.name] += 1
        return assess(observation)

    monkeypatch.setattr(scanner.engine.run, "assess", counting)
    monkeypatch.setattr(rules.evaluate, "assess", counting)
    return seen


@pytest.fixture
def outcome(calls: Counter[str]) -> Iterator[ScanOutcome]:
    """Run a scan whose every host was already read (a resume): no network is used."""
    observations, _ = sample_inputs()
    request = ScanRequest(
        inventory=Inventory(path="inventory.yaml", targets=tuple(o.target for o in observations)),
        policies=BASELINE,
        credentials=Credentials(username="LAB\\audit", password=SecretStr("x")),
        scan_id=SCAN.id,
        started_at=SCAN.started_at,
        done=tuple(observations),
        progress=False,
    )
    result = run_scan(request)
    try:
        yield result
    finally:
        result.close()


def test_the_scan_report_equals_the_assembly_of_the_same_hosts(outcome: ScanOutcome) -> None:
    observations, _ = sample_inputs()
    expected = ReportAssembly(HostBuffer())
    for observation in observations:
        setting = assess(observation)
        expected.add(observation, evaluate(observation, BASELINE, setting=setting), setting=setting)
    assert isinstance(outcome.hosts, SpilledHosts)  # production keeps its hosts on disk
    assert list(outcome.hosts.with_observations()) == list(expected.hosts().with_observations())
    header = expected.header(outcome.header.scan, tool_version=outcome.header.tool.version)
    assert outcome.header == header
    assert outcome.header.scan.id == SCAN.id and not outcome.header.scan.interrupted
    code = expected.exit_code(interrupted=False, fail_on=ScanRequest.fail_on, min_coverage=1.0)
    assert outcome.code == code == ExitCode.INCOMPLETE


def test_each_host_is_assessed_once(outcome: ScanOutcome, calls: Counter[str]) -> None:
    read = {h.name for h in outcome.hosts if h.setting is not None}
    assert len(read) == 13
    # A read host: once, by the engine; the rules and the host report reuse that setting.
    assert {name: calls[name] for name in read} == dict.fromkeys(read, 1)
    # An unread host has no setting: rules.evaluate's own check of it returns None at once.
    assert all(1 <= calls[h.name] <= 2 for h in outcome.hosts if h.name not in read)
