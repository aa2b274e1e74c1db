"""The pure parts of an apply: plan to steps, verdicts, exit status, report age, targets rebuilt from a report."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reports.hosts import Report
from reports.model import HostReport
from reports.remediation.plan import DeleteValue, Dword, HostPlan, Observed, RegistryKey, RestartService, SetValue
from reports.remediation.source import ReportError
from scanner.cli.remediate import check_age
from scanner.collect.remediate import ActionKind, ActionResult, HostApply, Outcome
from scanner.core.exitcodes import ExitCode
from scanner.core.models import HostError, Observation, Scheme, Stage, Target, WinRMStack
from scanner.core.results import RuleResult, Severity, Status
from scanner.core.semantics import OsFamily
from scanner.engine.apply import changes_of, exit_code_of, verdict_of
from scanner.engine.targets import Recorded, rebuild_targets
from scanner.history.applylog import HostRecord, Verdict
from scanner.inputs.inventory import Inventory
from tests.support.sample_report import make_sample_report

TARGET = Target(name="w10", address="192.0.2.10", port=5985)
PLAN = HostPlan(
    name="w10",
    address="192.0.2.10",
    port=5985,
    os_family=OsFamily.VISTA_PLUS,
    os_version="10.0.19045",
    key=RegistryKey.POLICYAGENT,
    actions=[
        SetValue(key=RegistryKey.POLICYAGENT, key_present=True,
                 before=Observed(name="AssumeUDPEncapsulationContextOnSendRule", type="REG_SZ", data="2"),
                 after=Dword(data=0)),
        DeleteValue(key=RegistryKey.IPSEC,
                    before=Observed(name="assumeudpencapsulationcontextonsendrule", type="REG_DWORD", data=1)),
        RestartService(),
    ],
    rules=["NATT-001", "NATT-003"],
)


def step(action: ActionKind, result: Outcome, reason: str | None = None) -> ActionResult:
    return ActionResult(action=action, what="x", before=None, after=None, result=result, reason=reason)


def applied(*steps: ActionResult, error: HostError | None = None) -> HostApply:
    return HostApply(observation=Observation(target=TARGET, error=error), actions=steps)


ALL_DONE = applied(step(ActionKind.SET_VALUE, Outcome.DONE), step(ActionKind.DELETE_VALUE, Outcome.DONE),
                   step(ActionKind.RESTART_SERVICE, Outcome.DONE))


def rescan(*statuses: tuple[str, Status], error: HostError | None = None) -> HostReport:
    results = [RuleResult(rule_id=rule, title=rule, severity=Severity.HIGH, status=status, message="",
                          finding_id=f"f-{rule}") for rule, status in statuses]
    worst = Status.ERROR if error else (Status.FAIL if any(s is Status.FAIL for _, s in statuses) else Status.PASS)
    return HostReport(name="w10", address="192.0.2.10", port=5985, tags={}, status=worst, requests=4, os=None,
                      setting=None, error=error, results=results)


def test_changes_follow_the_plan_and_keep_the_befores() -> None:
    changes = changes_of(PLAN)
    assert [c.action for c in changes] == [ActionKind.SET_VALUE, ActionKind.DELETE_VALUE, ActionKind.RESTART_SERVICE]
    assert changes[0].data == 0 and changes[0].before is not None and changes[0].before.data == "2"
    assert changes[1].before is not None and changes[1].before.name == "assumeudpencapsulationcontextonsendrule"
    assert changes[2].service == "PolicyAgent"


def test_verdicts() -> None:
    passing = rescan(("NATT-001", Status.PASS), ("NATT-003", Status.PASS), ("NATT-002", Status.FAIL))
    assert verdict_of(PLAN, ALL_DONE, passing, verified=True)[0] is Verdict.PASS  # NATT-002 is not this plan's
    failing = rescan(("NATT-001", Status.FAIL), ("NATT-003", Status.PASS))
    assert verdict_of(PLAN, ALL_DONE, failing, verified=True) == (Verdict.FAIL, "applied; still failing: NATT-001")
    erroring = rescan(("NATT-001", Status.ERROR), ("NATT-003", Status.PASS))
    assert verdict_of(PLAN, ALL_DONE, erroring, verified=True)[0] is Verdict.UNVERIFIED
    unread = rescan(error=HostError(stage=Stage.CONNECT, reason="refused", message="no"))
    assert verdict_of(PLAN, ALL_DONE, unread, verified=True)[0] is Verdict.UNVERIFIED
    assert verdict_of(PLAN, ALL_DONE, None, verified=True)[0] is Verdict.UNVERIFIED
    assert verdict_of(PLAN, ALL_DONE, None, verified=False) == (Verdict.PASS, "applied; not verified (--no-verify)")


def test_a_value_written_but_not_restarted_is_never_a_pass() -> None:
    no_restart = applied(step(ActionKind.SET_VALUE, Outcome.DONE), step(ActionKind.DELETE_VALUE, Outcome.DONE),
                         step(ActionKind.RESTART_SERVICE, Outcome.FAILED, "service_start_failed"))
    passing = rescan(("NATT-001", Status.PASS), ("NATT-003", Status.PASS))
    verdict, detail = verdict_of(PLAN, no_restart, passing, verified=True)
    assert verdict is Verdict.UNVERIFIED and "service_start_failed" in detail and "not in force" in detail
    assert verdict_of(PLAN, no_restart, None, verified=False)[0] is Verdict.UNVERIFIED
    delete_failed = applied(step(ActionKind.SET_VALUE, Outcome.DONE),
                            step(ActionKind.DELETE_VALUE, Outcome.FAILED, "access_denied"),
                            step(ActionKind.RESTART_SERVICE, Outcome.SKIPPED, "earlier_step_failed"))
    assert verdict_of(PLAN, delete_failed, passing, verified=True)[0] is Verdict.UNVERIFIED
    stopped = applied(step(ActionKind.SET_VALUE, Outcome.DONE), step(ActionKind.DELETE_VALUE, Outcome.DONE),
                      step(ActionKind.RESTART_SERVICE, Outcome.UNCHANGED))
    assert verdict_of(PLAN, stopped, passing, verified=True)[0] is Verdict.PASS  # it reads the value when it starts


def test_a_host_left_alone_is_judged_by_the_rescan_or_fails_unverified() -> None:
    skipped = applied(*(step(k, Outcome.SKIPPED, "changed_since_report") for k in ActionKind))
    still = rescan(("NATT-001", Status.FAIL), ("NATT-003", Status.PASS))
    assert verdict_of(PLAN, skipped, still, verified=True)[0] is Verdict.FAIL
    assert verdict_of(PLAN, skipped, None, verified=False)[0] is Verdict.FAIL
    unreached = applied(*(step(k, Outcome.SKIPPED, "connect/refused") for k in ActionKind),
                        error=HostError(stage=Stage.CONNECT, reason="refused", message="refused"))
    assert verdict_of(PLAN, unreached, None, verified=True)[0] is Verdict.UNVERIFIED


def record(verdict: Verdict) -> HostRecord:
    return HostRecord(name="h", address="a", port=1, rules=[], actions=[], verdict=verdict, detail="")


def test_exit_status_precedence() -> None:
    assert exit_code_of([]) is ExitCode.OK
    assert exit_code_of([record(Verdict.PASS)]) is ExitCode.OK
    assert exit_code_of([record(Verdict.PASS), record(Verdict.FAIL)]) is ExitCode.FINDINGS
    assert exit_code_of([record(Verdict.FAIL), record(Verdict.UNVERIFIED)]) is ExitCode.INCOMPLETE


def aged(finished_at: str) -> Report:
    report = make_sample_report()
    scan = report.header.scan.model_copy(update={"finished_at": finished_at})
    return Report(report.header.model_copy(update={"scan": scan}), report.hosts)


def test_report_age() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    check_age(aged("2026-11-28T00:00:00Z"), "r.json", 24 * 3600, now)
    too_old = r"finished at 2026-11-27T11:00:00Z, 25h ago, longer than --max-report-age 24h"
    with pytest.raises(ReportError, match=too_old):
        check_age(aged("2026-11-27T11:00:00Z"), "r.json", 24 * 3600, now)
    check_age(aged("2026-11-28T12:04:00Z"), "r.json", 24 * 3600, now)  # a little clock skew
    with pytest.raises(ReportError, match="in the future"):
        check_age(aged("2026-11-28T13:00:00Z"), "r.json", 24 * 3600, now)
    with pytest.raises(ReportError, match="is not a time"):
        check_age(aged("yesterday"), "r.json", 24 * 3600, now)


def test_targets_from_recorded_fields() -> None:
    rebuilt = rebuild_targets(
        [Recorded("a", "192.0.2.1", 5985), Recorded("b", "192.0.2.2", 5986), Recorded("c", "192.0.2.3", 443),
         Recorded("evil", "192.0.2.4; rm", 5985)],
        source="r.json", inventory=None, same_address=True,
    )
    assert [(t.name, t.scheme, t.winrm) for t in rebuilt.targets] == [
        ("a", Scheme.HTTP, WinRMStack.CURRENT), ("b", Scheme.HTTPS, WinRMStack.CURRENT),
        ("c", Scheme.HTTPS, WinRMStack.LEGACY),
    ]
    assert len(rebuilt.warnings) == 1 and "'evil' left out" in rebuilt.warnings[0]


def test_targets_from_the_inventory() -> None:
    listed = Inventory(path="inv.yaml", targets=(
        Target(name="A", address="192.0.2.1", port=5986, scheme=Scheme.HTTPS, source="inv.yaml:3"),
        Target(name="b", address="192.0.2.99", port=5985, source="inv.yaml:4"),
    ))
    hosts = [Recorded("a", "192.0.2.1", 5986), Recorded("b", "192.0.2.2", 5985), Recorded("c", "192.0.2.3", 5985)]
    apply = rebuild_targets(hosts, source="r.json", inventory=listed, same_address=True)
    assert [t.name for t in apply.targets] == ["A"]  # the inventory's entry, all its fields
    assert any("read at 192.0.2.2:5985: left out" in w for w in apply.warnings)
    assert any("host c of the report is not in the inventory" in w for w in apply.warnings)
    rescan_targets = rebuild_targets(hosts, source="r.json", inventory=listed, same_address=False)
    assert [t.address for t in rescan_targets.targets] == ["192.0.2.1", "192.0.2.99"]
