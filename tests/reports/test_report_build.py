"""Report assembly (ordering, statuses, summary) and the exit code precedence."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reports.build import build_report, coverage_of, exit_code
from reports.model import ScanReport
from scanner.core.exitcodes import ExitCode
from scanner.core.models import POLICYAGENT_KEY, HostError, Observation, OsInfo, Stage
from scanner.core.results import RuleResult, Severity, Status, finding_uid
from tests.support.sample_report import SCAN, dword, make_sample_report, result, sample_inputs, target


def read_host(name: str, mode: int = 0) -> Observation:
    """Return a Windows 10 host read successfully with the given DWORD."""
    return Observation(
        target=target(name), requests=4, os=OsInfo(version="10.0.19045"), keys=(dword(POLICYAGENT_KEY, mode),)
    )


def unread_host(name: str) -> Observation:
    """Return a host that could not be read."""
    error = HostError(stage=Stage.AUTH, reason="http_401", message="denied")
    return Observation(target=target(name), error=error)


def one(rule: str, host: str, status: Status) -> list[RuleResult]:
    """Return a single result."""
    return [result(rule, host, status, "m")]


# ---- build_report --------------------------------------------------------------------------


def test_hosts_sorted_case_insensitively_then_exactly_and_results_by_rule_id() -> None:
    observations = [read_host(n) for n in ("b", "B", "a", "A2", "a1", "straße", "STRASSE")]
    results = {
        "b": [result("NATT-003", "b", Status.PASS, "m"), result("NATT-001", "b", Status.PASS, "m")],
    }
    report = build_report(observations, results, SCAN, tool_version="9")
    assert [h.name for h in report.hosts] == ["a", "a1", "A2", "B", "b", "STRASSE", "straße"]
    assert [r.rule_id for r in report.hosts[4].results] == ["NATT-001", "NATT-003"]
    assert report.tool.version == "9"
    assert report.tool.name == "natt-audit"


def test_host_status_is_the_worst_result_and_error_for_unread_hosts_without_rules() -> None:
    observations = [read_host("w"), read_host("f"), read_host("none"), unread_host("e")]
    results = {
        "w": one("NATT-001", "w", Status.WAIVED) + one("NATT-002", "w", Status.PASS),
        "f": one("NATT-001", "f", Status.WAIVED) + one("NATT-002", "f", Status.FAIL),
    }
    statuses = {h.name: h.status for h in build_report(observations, results, SCAN, tool_version="0").hosts}
    assert statuses == {
        "w": Status.WAIVED,
        "f": Status.FAIL,
        "none": Status.NOT_APPLICABLE,
        "e": Status.ERROR,
    }


def test_an_observation_with_neither_os_nor_error_is_reported_as_an_error() -> None:
    report = build_report([Observation(target=target("ghost"))], {}, SCAN, tool_version="0")
    host = report.hosts[0]
    assert host.status is Status.ERROR
    assert host.error is not None
    assert host.error.reason == "incomplete_observation"
    assert report.summary.coverage == 0.0


def test_summary_of_the_sample() -> None:
    summary = make_sample_report().summary
    assert summary.hosts_total == 16
    assert summary.hosts_by_status == {"pass": 3, "fail": 8, "error": 3, "not_applicable": 1, "waived": 1}
    assert summary.coverage == 0.8125
    assert summary.modes == {"0": 5, "1": 2, "2": 3, "unknown": 2, "not_applicable": 1}
    assert summary.requests_total == 109


def test_every_status_and_mode_key_is_present_even_at_zero() -> None:
    summary = build_report([unread_host("x")], {}, SCAN, tool_version="0").summary
    assert summary.hosts_by_status == {"pass": 0, "fail": 0, "error": 1, "not_applicable": 0, "waived": 0}
    assert summary.modes == {"0": 0, "1": 0, "2": 0, "unknown": 0, "not_applicable": 0}


def test_setting_is_assessed_from_the_observation() -> None:
    host = build_report([read_host("h", 4294967295)], {}, SCAN, tool_version="0").hosts[0]
    assert host.setting is not None
    assert host.setting.effective_mode == "unknown"
    assert host.setting.raw_value == 4294967295
    assert host.setting.integrity.value == "invalid_value"


def test_duplicate_hosts_and_unknown_result_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate host"):
        build_report([read_host("srv"), read_host("srv")], {}, SCAN, tool_version="0")
    with pytest.raises(ValueError, match="not observed"):
        build_report([read_host("a")], {"b": []}, SCAN, tool_version="0")


def test_build_is_independent_of_input_order() -> None:
    observations, results = sample_inputs()
    forward = build_report(observations, results, SCAN, tool_version="0")
    backward = build_report(observations[::-1], dict(reversed(results.items())), SCAN, tool_version="0")
    assert forward == backward


def test_empty_inventory_covers_nothing() -> None:
    report = build_report([], {}, SCAN, tool_version="0")
    assert report.summary.coverage == 0.0
    assert exit_code(report, fail_on=Severity.LOW, min_coverage=1.0) is ExitCode.INCOMPLETE
    assert exit_code(report, fail_on=Severity.LOW, min_coverage=0.0) is ExitCode.OK


@given(st.integers(min_value=1, max_value=10**7), st.data())
def test_coverage_is_rounded_down_so_100_percent_means_every_host(total: int, data: st.DataObject) -> None:
    read = data.draw(st.integers(min_value=0, max_value=total))
    coverage = coverage_of(read, total)
    assert (coverage == 1.0) == (read == total)
    assert 0.0 <= coverage <= read / total
    assert read / total - coverage < 0.0001
    assert round(coverage, 4) == coverage


# ---- exit_code -----------------------------------------------------------------------------


def scan_of(observations: list[Observation], results: dict[str, list[RuleResult]]) -> ScanReport:
    """Return a report of these hosts."""
    return build_report(observations, results, SCAN, tool_version="0")


def test_exit_ok_findings_incomplete_and_their_precedence() -> None:
    clean = scan_of([read_host("a")], {"a": one("NATT-001", "a", Status.PASS)})
    assert exit_code(clean, fail_on=Severity.LOW, min_coverage=1.0) is ExitCode.OK
    failing = scan_of([read_host("a")], {"a": one("NATT-003", "a", Status.FAIL)})
    assert exit_code(failing, fail_on=Severity.LOW, min_coverage=1.0) is ExitCode.FINDINGS
    both = scan_of([read_host("a"), unread_host("b")], {"a": one("NATT-001", "a", Status.FAIL)})
    assert exit_code(both, fail_on=Severity.LOW, min_coverage=1.0) is ExitCode.INCOMPLETE  # 3 beats 1
    assert exit_code(both, fail_on=Severity.LOW, min_coverage=0.5) is ExitCode.FINDINGS
    interrupted = both.model_copy(update={"scan": SCAN.model_copy(update={"interrupted": True})})
    assert exit_code(interrupted, fail_on=Severity.LOW, min_coverage=1.0) is ExitCode.INTERRUPTED


def test_fail_on_threshold_and_waived_results() -> None:
    report = scan_of([read_host("a")], {"a": one("NATT-002", "a", Status.FAIL)})  # medium
    assert exit_code(report, fail_on=Severity.MEDIUM, min_coverage=1.0) is ExitCode.FINDINGS
    assert exit_code(report, fail_on=Severity.HIGH, min_coverage=1.0) is ExitCode.OK
    waived = scan_of([read_host("a")], {"a": one("NATT-001", "a", Status.WAIVED)})
    assert exit_code(waived, fail_on=Severity.INFO, min_coverage=1.0) is ExitCode.OK


def test_a_rule_in_error_on_a_read_host_is_not_covered() -> None:
    report = scan_of([read_host("a"), read_host("b")], {"a": one("NATT-001", "a", Status.ERROR)})
    assert report.summary.coverage == 1.0  # both were read ...
    # ... but a rule could not be evaluated on one of them: not covered, never a silent pass.
    assert exit_code(report, fail_on=Severity.LOW, min_coverage=1.0) is ExitCode.INCOMPLETE
    assert exit_code(report, fail_on=Severity.LOW, min_coverage=0.5) is ExitCode.OK


def test_min_coverage_compares_exactly() -> None:
    observations = [read_host(f"h{i}") for i in range(19)] + [unread_host("x")]
    report = scan_of(observations, {})
    assert exit_code(report, fail_on=Severity.LOW, min_coverage=0.95) is ExitCode.OK  # 19/20 == 0.95
    assert exit_code(report, fail_on=Severity.LOW, min_coverage=0.9500001) is ExitCode.INCOMPLETE
    # The decision uses the hosts themselves, never the rounded headline figure.
    rounded = report.model_copy(update={"summary": report.summary.model_copy(update={"coverage": 1.0})})
    assert exit_code(rounded, fail_on=Severity.LOW, min_coverage=1.0) is ExitCode.INCOMPLETE


def test_min_coverage_out_of_range_is_refused() -> None:
    report = scan_of([read_host("a")], {})
    with pytest.raises(ValueError, match="min_coverage"):
        exit_code(report, fail_on=Severity.LOW, min_coverage=1.5)


def test_sample_exit_code() -> None:
    report = make_sample_report()
    assert exit_code(report, fail_on=Severity.LOW, min_coverage=1.0) is ExitCode.INCOMPLETE
    assert exit_code(report, fail_on=Severity.CRITICAL, min_coverage=0.8) is ExitCode.OK
    assert exit_code(report, fail_on=Severity.HIGH, min_coverage=0.8) is ExitCode.FINDINGS


def test_finding_ids_are_stable_per_rule_and_host() -> None:
    report = make_sample_report()
    for host in report.hosts:
        for r in host.results:
            assert r.finding_id == finding_uid(r.rule_id, host.name)
