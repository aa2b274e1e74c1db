"""The planner: which hosts get which actions, with the before and after; what is left out and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import jsonschema
import pytest
from pydantic import ValidationError

from reports.build import host_report
from reports.model import HostReport
from reports.remediation.json_plan import plan_json_schema, render
from reports.remediation.plan import (
    DeleteValue,
    Dword,
    HostPlan,
    Observed,
    RegistryKey,
    RemediationPlan,
    RestartService,
    SetValue,
    SkipReason,
    ValueName,
)
from reports.remediation.planner import build_plan, plan_host
from reports.remediation.source import ReportError, load_report
from rules.loader import builtin_policy
from rules.remediation import Fix
from rules.remediation import SetValue as FixSet
from scanner.core.models import IPSEC_KEY, POLICYAGENT_KEY, VALUE_NAME
from scanner.core.results import RuleResult, Severity, Status, finding_uid
from scanner.core.semantics import OsFamily, assess
from tests.reports.remediation.sample import HOSTILE_SZ, SCAN, make_plan, make_report, observations, report_json

AGENT, IPSEC = RegistryKey.POLICYAGENT, RegistryKey.IPSEC


@pytest.fixture(scope="module")
def plan() -> RemediationPlan:
    return make_plan()


def planned(plan: RemediationPlan, name: str) -> HostPlan:
    [host] = [h for h in plan.hosts if h.name == name]
    return host


def skips(plan: RemediationPlan, name: str) -> dict[SkipReason, list[str]]:
    return {s.reason: s.rules for s in plan.skipped if s.name == name}


# host -> (change set, rules fixed, restart)
PLANNED = {
    "xp-sp2-mode2": ("set-IPsec-0", ["NATT-001"], True),
    "xp-sp3-stray": ("delete-PolicyAgent", ["NATT-003"], False),
    "w2003-sz": ("set-IPsec-0.delete-PolicyAgent", ["NATT-002", "NATT-003"], True),
    "w10-mode2-stray": ("set-PolicyAgent-0.delete-IPsec", ["NATT-001", "NATT-003"], True),
    "w10-sz": ("set-PolicyAgent-0", ["NATT-002"], True),
    "w11-dword3": ("set-PolicyAgent-0", ["NATT-001", "NATT-002"], True),
    "w10-multi": ("set-PolicyAgent-0", ["NATT-002"], True),
    "w10-binary": ("set-PolicyAgent-0", ["NATT-002"], True),
    "w10-qword-lower": ("set-PolicyAgent-0", ["NATT-002"], True),
    "w2019-keyabsent-stray": ("delete-IPsec", ["NATT-003"], False),
}
SKIPPED = {
    "xp-sp1": {SkipReason.UPGRADE_REQUIRED: ["NATT-001"]},
    "win2000": {SkipReason.WINDOWS_2000: []},
    "unknown-os": {SkipReason.UNKNOWN_OS: ["NATT-001", "NATT-002", "NATT-003"]},
    "unreachable": {SkipReason.NOT_READ: []},
    "w10-waived": {SkipReason.WAIVED: ["NATT-001"]},
}


def test_every_row_is_planned_or_skipped_as_documented(plan: RemediationPlan) -> None:
    assert {h.name: (h.change_set, h.rules, h.restart) for h in plan.hosts} == PLANNED
    assert {name: skips(plan, name) for name in {s.name for s in plan.skipped}} == SKIPPED
    assert "w10-mode0" not in {h.name for h in plan.hosts} | {s.name for s in plan.skipped}


def test_the_key_follows_the_os(plan: RemediationPlan) -> None:
    for host in plan.hosts:
        key = IPSEC if host.os_family is OsFamily.XP_2003 else AGENT
        assert host.key is key
        assert all(a.key is key for a in host.actions if isinstance(a, SetValue))
        assert all(a.key is not key for a in host.actions if isinstance(a, DeleteValue))


def test_before_and_after_are_recorded(plan: RemediationPlan) -> None:
    host = planned(plan, "w2003-sz")
    assert host.actions == [
        SetValue(
            key=IPSEC, key_present=True, before=Observed(name=VALUE_NAME, type="REG_SZ", data="2"), after=Dword(data=0)
        ),
        DeleteValue(key=AGENT, before=Observed(name=VALUE_NAME, type="REG_SZ", data=HOSTILE_SZ)),
        RestartService(),
    ]
    lower = planned(plan, "w10-qword-lower").actions[0]
    assert isinstance(lower, SetValue)
    assert lower.before == Observed(name=VALUE_NAME.lower(), type="REG_QWORD", data=2)
    assert lower.name == VALUE_NAME  # what is written is always the documented name
    absent = planned(plan, "w2019-keyabsent-stray")
    assert absent.actions == [
        DeleteValue(key=IPSEC, before=Observed(name=VALUE_NAME, type="REG_EXPAND_SZ", data="%SystemRoot%"))
    ]


def test_the_plan_validates_against_its_schema_and_reads_back(plan: RemediationPlan) -> None:
    text = render(plan)
    assert text.isascii()
    jsonschema.validate(json.loads(text), plan_json_schema())
    assert RemediationPlan.model_validate_json(text) == plan


def test_schema_names_and_constants() -> None:
    assert get_args(ValueName) == (VALUE_NAME,)
    assert {k.value for k in RegistryKey} == {IPSEC_KEY, POLICYAGENT_KEY}
    assert plan_json_schema()["$id"] == "urn:natt-audit:schema:remediation:1.0"


# ---------------------------------------------------------------------------------------------
# Single hosts with hand-made results: waivers, conflicts, missing fixes, no-op fixes.

SET0 = Fix(set_value=FixSet(type="REG_DWORD", data=0), restart_service="PolicyAgent")
SET1 = Fix(set_value=FixSet(type="REG_DWORD", data=1))
STRAYS = Fix(delete_strays=True)


def result(rule: str, status: Status, host: str) -> RuleResult:
    return RuleResult(
        rule_id=rule, title=rule, severity=Severity.HIGH, status=status, message="m", finding_id=finding_uid(rule, host)
    )


def host_of(name: str, **statuses: Status) -> HostReport:
    [observation] = [o for o in observations() if o.target.name == name]
    results = [result(rule.replace("_", "-"), s, name) for rule, s in statuses.items()]
    return host_report(observation, results, assess(observation))


def test_a_waived_rule_holds_what_its_fix_would_change() -> None:
    host = host_of("w10-mode2-stray", NATT_001=Status.WAIVED, NATT_002=Status.FAIL, NATT_003=Status.FAIL)
    plan, left = plan_host(host, {"NATT-001": SET0, "NATT-002": SET0, "NATT-003": STRAYS})
    assert plan is not None
    assert [a.action for a in plan.actions] == ["delete_value"]  # the value NATT-001's waiver accepts stays
    assert plan.rules == ["NATT-003"]
    assert {(s.reason, tuple(s.rules)) for s in left} == {
        (SkipReason.WAIVED, ("NATT-001",)),
        (SkipReason.WAIVED, ("NATT-002",)),
    }


def test_fixes_that_disagree_plan_nothing() -> None:
    host = host_of("w10-mode2-stray", NATT_001=Status.FAIL, ROLE_VPN=Status.FAIL, NATT_003=Status.FAIL)
    plan, left = plan_host(host, {"NATT-001": SET0, "ROLE-VPN": SET1, "NATT-003": STRAYS})
    assert plan is None
    assert [(s.reason, s.rules) for s in left] == [(SkipReason.CONFLICT, ["NATT-001", "ROLE-VPN"])]


def test_failures_without_a_fix_and_fixes_that_change_nothing_are_listed() -> None:
    host = host_of("w10-mode0", NATT_001=Status.FAIL, OWNER=Status.FAIL)
    plan, left = plan_host(host, {"NATT-001": SET0})
    assert plan is None
    assert {(s.reason, tuple(s.rules)) for s in left} == {
        (SkipReason.NO_FIX, ("OWNER",)),
        (SkipReason.NO_CHANGE, ("NATT-001",)),
    }


def test_passing_and_not_applicable_rules_plan_nothing() -> None:
    host = host_of("w10-mode2-stray", NATT_001=Status.PASS, NATT_003=Status.NOT_APPLICABLE)
    assert plan_host(host, {"NATT-001": SET0, "NATT-003": STRAYS}) == (None, [])


def tampered(host: HostReport, **setting: object) -> HostReport:
    assert host.setting is not None
    return host.model_copy(update={"setting": host.setting.model_copy(update=setting)})


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"os_family": OsFamily.XP_2003}, "is vista-plus, the setting says xp-2003"),
        ({"applicable_key": IPSEC_KEY}, "reads SYSTEM"),
        ({"applicable_key": "SOFTWARE\\Evil"}, "reads SYSTEM"),
        ({"value_name": "OtherValue"}, "is named 'OtherValue'"),
        ({"present": False}, "says absent"),
    ],
)
def test_an_inconsistent_report_entry_is_not_trusted(change: dict[str, object], needle: str) -> None:
    host = tampered(host_of("w10-mode2-stray", NATT_001=Status.FAIL), **change)
    plan, left = plan_host(host, {"NATT-001": SET0})
    assert plan is None
    assert [s.reason for s in left] == [SkipReason.INVALID]
    assert needle in left[0].detail


def test_a_stray_elsewhere_than_the_other_key_is_not_trusted() -> None:
    host = host_of("w10-mode2-stray", NATT_003=Status.FAIL)
    assert host.setting is not None
    stray = host.setting.stray[0].model_copy(update={"key": "SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run"})
    plan, left = plan_host(tampered(host, stray=(stray,)), {"NATT-003": STRAYS})
    assert plan is None
    assert [s.reason for s in left] == [SkipReason.INVALID]


@pytest.mark.parametrize(
    "name", ["a b", "x;calc", "{{ lookup('pipe','id') }}", "h\n- evil", "'; exit #", "%COMPUTERNAME%", "*"]
)
def test_a_host_name_that_is_not_a_host_name_is_not_planned(name: str) -> None:
    host = host_of("w10-sz", NATT_002=Status.FAIL).model_copy(update={"name": name})
    plan, left = plan_host(host, {"NATT-002": SET0})
    assert plan is None
    assert [s.reason for s in left] == [SkipReason.INVALID]
    with pytest.raises(ValidationError):  # nor can a plan carry one
        HostPlan.model_validate({**planned(make_plan(), "w10-sz").model_dump(), "name": name})


def test_a_host_twice_in_a_report_is_not_planned() -> None:
    hosts = list(make_report().hosts)
    twice = [*hosts, next(h for h in hosts if h.name == "w10-sz").model_copy(update={"name": "W10-SZ"})]
    policies = [builtin_policy("baseline")]
    plan = build_plan(SCAN, twice, policies, report_schema_version="1.0", policy_specs=["baseline"], tool_version="t")
    assert "w10-sz" not in {h.name.lower() for h in plan.hosts}
    assert {s.name for s in plan.skipped if s.reason is SkipReason.INVALID} == {"w10-sz", "W10-SZ"}


def test_a_host_plan_keeps_its_invariants() -> None:
    good = planned(make_plan(), "w10-mode2-stray").model_dump()
    with pytest.raises(ValidationError, match="reads"):
        HostPlan.model_validate({**good, "key": IPSEC_KEY})
    with pytest.raises(ValidationError, match="follows a set_value"):
        HostPlan.model_validate({**good, "actions": good["actions"][1:]})
    with pytest.raises(ValidationError, match="then deletes"):
        HostPlan.model_validate({**good, "actions": list(reversed(good["actions"]))})
    with pytest.raises(ValidationError):
        HostPlan.model_validate({**good, "actions": [{**good["actions"][0], "name": "Run"}]})
    with pytest.raises(ValidationError):
        HostPlan.model_validate({**good, "actions": [{**good["actions"][0], "key": "SOFTWARE\\X"}]})
    bad = {**good["actions"][0], "after": {"type": "REG_DWORD", "data": 3}}
    with pytest.raises(ValidationError):
        HostPlan.model_validate({**good, "actions": [bad]})


# ---------------------------------------------------------------------------------------------
# The report is untrusted input: bounded, version first, validated whole.


def test_a_report_loads(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(report_json(make_report()), encoding="utf-8")
    loaded = load_report(path)
    assert loaded.header.schema_version == "1.0"
    assert loaded.header.scan == SCAN
    assert list(loaded.hosts) == list(make_report().hosts)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b'{"schema_version": "2.0", "hosts": []}', "unknown report schema_version '2.0'"),
        (b'{"hosts": []}', "unknown report schema_version None"),
        (b'{"schema_version": 1.0}', "unknown report schema_version 1.0"),
        (b'{"schema_version": "1.0", "hosts": []}', "not a valid natt-audit report"),
        (b"[" * 100_000, "not a JSON report"),
        (b"\xff\xfe{", "not a JSON report"),
        (b"", "not a JSON report"),
    ],
)
def test_a_bad_report_is_refused(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(content)
    with pytest.raises(ReportError, match=needle.replace("(", r"\(")):
        load_report(path)


def test_a_report_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(report_json(make_report()), encoding="utf-8")
    with pytest.raises(ReportError, match="larger than 1000 bytes"):
        load_report(path, limit=1000)
