"""Report assembly (ordering, statuses, summary) and the exit code precedence."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reports.build import ReportAssembly, Tally, coverage_of, exit_code_of, host_report
from reports.hosts import HostBuffer
from scanner.core.exitcodes import ExitCode
from scanner.core.models import POLICYAGENT_KEY, HostError, Observation, OsInfo, Stage
from scanner.core.results import RuleResult, Severity, Status, finding_uid
from scanner.core.semantics import assess
from tests.support.sample_report import (
    SCAN,
    assemble,
    assembly_of,
    dword,
    make_sample_report,
    result,
    sample_inputs,
    target,
)


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


# ---- ReportAssembly ------------------------------------------------------------------------


def test_hosts_sorted_case_insensitively_then_exactly_and_results_by_rule_id() -> None:
    observations = [read_host(n) for n in ("b", "B", "a", "A2", "a1", "straße", "STRASSE")]
    results = {
        "b": [result("NATT-003", "b", Status.PASS, "m"), result("NATT-001", "b", Status.PASS, "m")],
    }
    header, hosts = assemble(observations, results, SCAN, tool_version="9")
    assert [h.name for h in hosts] == ["a", "a1", "A2", "B", "b", "STRASSE", "straße"]
    assert [r.rule_id for r in list(hosts)[4].results] == ["NATT-001", "NATT-003"]
    assert header.tool.version == "9"
    assert header.tool.name == "natt-audit"


def test_host_status_is_the_worst_result_and_error_for_unread_hosts_without_rules() -> None:
    observations = [read_host("w"), read_host("f"), read_host("none"), unread_host("e")]
    results = {
        "w": one("NATT-001", "w", Status.WAIVED) + one("NATT-002", "w", Status.PASS),
        "f": one("NATT-001", "f", Status.WAIVED) + one("NATT-002", "f", Status.FAIL),
    }
    statuses = {h.name: h.status for h in assemble(observations, results).hosts}
    assert statuses == {
        "w": Status.WAIVED,
        "f": Status.FAIL,
        "none": Status.NOT_APPLICABLE,
        "e": Status.ERROR,
    }


def test_an_observation_with_neither_os_nor_error_is_reported_as_an_error() -> None:
    header, hosts = assemble([Observation(target=target("ghost"))], {})
    (host,) = hosts
    assert host.status is Status.ERROR
    assert host.error is not None
    assert host.error.reason == "incomplete_observation"
    assert header.summary.coverage == 0.0


def test_summary_of_the_sample() -> None:
    summary = make_sample_report().header.summary
    assert summary.hosts_total == 16
    assert summary.hosts_by_status == {"pass": 3, "fail": 8, "error": 3, "not_applicable": 1, "waived": 1}
    assert summary.coverage == 0.8125
    assert summary.modes == {"0": 5, "1": 2, "2": 3, "unknown": 2, "not_applicable": 1}
    assert summary.requests_total == 109


def test_every_status_and_mode_key_is_present_even_at_zero() -> None:
    summary = assemble([unread_host("x")], {}).header.summary
    assert summary.hosts_by_status == {"pass": 0, "fail": 0, "error": 1, "not_applicable": 0, "waived": 0}
    assert summary.modes == {"0": 0, "1": 0, "2": 0, "unknown": 0, "not_applicable": 0}


def test_the_host_report_keeps_the_setting_the_rules_were_given() -> None:
    observation = read_host("h", 4294967295)
    setting = assess(observation)
    assert setting is not None
    (host,) = assemble([observation], {}).hosts
    assert host.setting == setting
    assert host.setting.effective_mode == "unknown"
    assert host.setting.raw_value == 4294967295
    assert host.setting.integrity.value == "invalid_value"
    # The setting is the caller's (computed once per host), never assessed again here.
    other = assess(read_host("h", 1))
    assert host_report(observation, [], other).setting == other


def test_duplicate_hosts_are_refused() -> None:
    assembly = ReportAssembly(HostBuffer())
    assembly.add(read_host("srv"), [], setting=assess(read_host("srv")))
    with pytest.raises(ValueError, match="duplicate host"):
        assembly.add(read_host("srv"), [], setting=assess(read_host("srv")))
    assert len(assembly.hosts()) == 1


def test_assembly_is_independent_of_input_order() -> None:
    observations, results = sample_inputs()
    forward = assemble(observations, results)
    backward = assemble(observations[::-1], dict(reversed(results.items())))
    assert forward.header == backward.header
    assert list(forward.hosts) == list(backward.hosts)
    assert list(forward.hosts.with_observations()) == list(backward.hosts.with_observations())


def test_each_host_keeps_its_observation_for_history() -> None:
    observations, results = sample_inputs()
    hosts = assemble(observations, results).hosts
    by_name = {o.target.name: o for o in observations}
    pairs = list(hosts.with_observations())
    assert [h for h, _ in pairs] == list(hosts)
    assert all(Observation.model_validate_json(raw or "") == by_name[h.name] for h, raw in pairs)


def test_empty_inventory_covers_nothing() -> None:
    assembly = assembly_of([], {})
    assert assembly.header(SCAN, tool_version="0").summary.coverage == 0.0
    assert code(assembly, fail_on=Severity.LOW, min_coverage=1.0) is ExitCode.INCOMPLETE
    assert code(assembly, fail_on=Severity.LOW, min_coverage=0.0) is ExitCode.OK


@given(st.integers(min_value=1, max_value=10**7), st.data())
def test_coverage_is_rounded_down_so_100_percent_means_every_host(total: int, data: st.DataObject) -> None:
    read = data.draw(st.integers(min_value=0, max_value=total))
    coverage = coverage_of(read, total)
    assert (coverage == 1.0) == (read == total)
    assert 0.0 <= coverage <= read / total
    assert read / total - coverage < 0.0001
    assert round(coverage, 4) == coverage


# ---- exit_code ----------------------------------------------------------------------------


def code(assembly: ReportAssembly, *, fail_on: Severity, min_coverage: float, interrupted: bool = False) -> ExitCode:
    """Return the exit code the engine would return for these hosts."""
    return assembly.exit_code(interrupted=interrupted, fail_on=fail_on, min_coverage=min_coverage)


def scan_of(observations: list[Observation], results: dict[str, list[RuleResult]]) -> ReportAssembly:
    """Return the assembly of these hosts."""
    return assembly_of(observations, results)


def test_exit_ok_findings_incomplete_and_their_precedence() -> None:
    clean = scan_of([read_host("a")], {"a": one("NATT-001", "a", Status.PASS)})
    assert code(clean, fail_on=Severity.LOW, min_coverage=1.0) is ExitCode.OK
    failing = scan_of([read_host("a")], {"a": one("NATT-003", "a", Status.FAIL)})
    assert code(failing, fail_on=Severity.LOW, min_coverage=1.0) is ExitCode.FINDINGS
    both = scan_of([read_host("a"), unread_host("b")], {"a": one("NATT-001", "a", Status.FAIL)})
    assert code(both, fail_on=Severity.LOW, min_coverage=1.0) is ExitCode.INCOMPLETE  # 3 beats 1
    assert code(both, fail_on=Severity.LOW, min_coverage=0.5) is ExitCode.FINDINGS
    assert code(both, fail_on=Severity.LOW, min_coverage=1.0, interrupted=True) is ExitCode.INTERRUPTED


def test_fail_on_threshold_and_waived_results() -> None:
    report = scan_of([read_host("a")], {"a": one("NATT-002", "a", Status.FAIL)})  # medium
    assert code(report, fail_on=Severity.MEDIUM, min_coverage=1.0) is ExitCode.FINDINGS
    assert code(report, fail_on=Severity.HIGH, min_coverage=1.0) is ExitCode.OK
    waived = scan_of([read_host("a")], {"a": one("NATT-001", "a", Status.WAIVED)})
    assert code(waived, fail_on=Severity.INFO, min_coverage=1.0) is ExitCode.OK


def test_a_rule_in_error_on_a_read_host_is_not_covered() -> None:
    report = scan_of([read_host("a"), read_host("b")], {"a": one("NATT-001", "a", Status.ERROR)})
    assert report.header(SCAN, tool_version="0").summary.coverage == 1.0  # both were read ...
    # ... but a rule could not be evaluated on one of them: not covered, never a silent pass.
    assert code(report, fail_on=Severity.LOW, min_coverage=1.0) is ExitCode.INCOMPLETE
    assert code(report, fail_on=Severity.LOW, min_coverage=0.5) is ExitCode.OK


def test_min_coverage_compares_exactly() -> None:
    observations = [read_host(f"h{i}") for i in range(19)] + [unread_host("x")]
    report = scan_of(observations, {})
    assert code(report, fail_on=Severity.LOW, min_coverage=0.95) is ExitCode.OK  # 19/20 == 0.95
    assert code(report, fail_on=Severity.LOW, min_coverage=0.9500001) is ExitCode.INCOMPLETE
    # The decision uses the exact host counts, never the rounded headline figure: 99,999 of
    # 100,000 hosts covered shows as 0.9999 but meets a minimum of 0.99999.
    tally = Tally()
    tally.total, tally.covered, tally.read = 100_000, 99_999, 99_999
    assert tally.summary().coverage == 0.9999
    assert exit_code_of(tally, interrupted=False, fail_on=Severity.LOW, min_coverage=0.99999) is ExitCode.OK
    assert exit_code_of(tally, interrupted=False, fail_on=Severity.LOW, min_coverage=1.0) is ExitCode.INCOMPLETE


def test_min_coverage_out_of_range_is_refused() -> None:
    report = scan_of([read_host("a")], {})
    with pytest.raises(ValueError, match="min_coverage"):
        code(report, fail_on=Severity.LOW, min_coverage=1.5)


def test_sample_exit_code() -> None:
    report = scan_of(*sample_inputs())
    assert code(report, fail_on=Severity.LOW, min_coverage=1.0) is ExitCode.INCOMPLETE
    assert code(report, fail_on=Severity.CRITICAL, min_coverage=0.8) is ExitCode.OK
    assert code(report, fail_on=Severity.HIGH, min_coverage=0.8) is ExitCode.FINDINGS


def test_finding_ids_are_stable_per_rule_and_host() -> None:
    report = make_sample_report()
    for host in report.hosts:
        for r in host.results:
            assert r.finding_id == finding_uid(r.rule_id, host.name)
