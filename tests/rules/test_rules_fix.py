"""The `fix:` block of a rule: validated like the rest of the language, and checked by `policy test`."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import jsonschema
import pytest

from rules.fixcheck import check_fixes, fixed_observation
from rules.loader import builtin_policy, load_policy, policy_json_schema
from rules.remediation import Fix, SetValue
from scanner.cli.policy import run_test, run_validate
from scanner.core.models import (
    IPSEC_KEY,
    POLICYAGENT_KEY,
    VALUE_NAME,
    KeyRead,
    Observation,
    OsInfo,
    RegistryValue,
    Target,
)
from scanner.core.semantics import assess
from scanner.core.yamlfile import FileError

RULE = """\
name: t
rules:
  - id: R-1
    title: t
    severity: high
    rationale: r
    remediation: m
    check: {{fact: effective_mode, not_equals: 2}}
{fix}
    examples:
      pass: [{{}}]
      fail: [{{raw_type: REG_DWORD, raw_value: 2}}, {{os.version: "5.1.2600", os.service_pack: 1}}]
"""


def policy_file(tmp_path: Path, fix: str) -> Path:
    """Write a one-rule policy whose rule carries `fix` (YAML lines indented under the rule)."""
    path = tmp_path / "p.yaml"
    path.write_text(RULE.format(fix=textwrap.indent(textwrap.dedent(fix).strip("\n"), "    ")), encoding="utf-8")
    return path


def refused(tmp_path: Path, fix: str) -> FileError:
    """Load a policy whose fix must be refused; return the error (file:line:col: field: message)."""
    path = policy_file(tmp_path, fix)
    with pytest.raises(FileError) as info:
        load_policy(path)
    assert str(info.value).startswith(f"{path}:")
    return info.value


def test_a_full_fix_loads(tmp_path: Path) -> None:
    fix = """
    fix:
      set_value: {type: REG_DWORD, data: 0}
      delete_strays: true
      restart_service: PolicyAgent
    """
    rule = load_policy(policy_file(tmp_path, fix)).rules[0]
    assert rule.fix == Fix(
        set_value=SetValue(type="REG_DWORD", data=0), delete_strays=True, restart_service="PolicyAgent"
    )


def test_a_rule_without_fix_still_loads(tmp_path: Path) -> None:
    assert load_policy(policy_file(tmp_path, "")).rules[0].fix is None


@pytest.mark.parametrize(
    ("fix", "line", "needle"),
    [
        ("fix: {set_value: {type: REG_SZ, data: 0}}", 9, "fix.set_value.type"),
        ("fix: {set_value: {type: REG_DWORD, data: 3}}", 9, "less than or equal to 2"),
        ("fix: {set_value: {type: REG_DWORD, data: '0'}}", 9, "valid integer"),
        ("fix: {set_value: {type: REG_DWORD, data: true}}", 9, "valid integer"),
        ("fix: {delete_strays: false}", 9, "at least one change"),
        ("fix: {}", 9, "at least one change"),
        ("fix: {restart_service: PolicyAgent, delete_strays: true}", 9, "without set_value"),
        ("fix: {set_value: {type: REG_DWORD, data: 0}, restart_service: IKEEXT}", 9, "PolicyAgent"),
        ("fix: {set_value: {type: REG_DWORD, data: 0}, reboot: true}", 9, "fix.reboot"),
        ("fix: {key: 'SOFTWARE\\Evil', set_value: {type: REG_DWORD, data: 0}}", 9, "takes no `key`"),
        ("fix: {path: 'HKLM:\\SOFTWARE', delete_strays: true}", 9, "takes no `path`"),
        ("fix: {name: Other, delete_strays: true}", 9, "takes no `name`"),
    ],
)
def test_bad_fixes_are_refused_with_their_position(tmp_path: Path, fix: str, line: int, needle: str) -> None:
    error = refused(tmp_path, fix)
    assert error.line == line
    assert needle in str(error)


def test_the_builtin_policies_declare_fixes() -> None:
    baseline = {rule.id: rule.fix for rule in builtin_policy("baseline").rules}
    set0 = Fix(set_value=SetValue(type="REG_DWORD", data=0), restart_service="PolicyAgent")
    assert baseline == {"NATT-001": set0, "NATT-002": set0, "NATT-003": Fix(delete_strays=True)}
    strict = {rule.id: rule.fix for rule in builtin_policy("strict").rules}
    assert strict == {
        "STRICT-001": set0,
        "STRICT-002": set0,
        "STRICT-003": Fix(delete_strays=True),
        "STRICT-004": None,  # a rename is not a set: docs/remediation.md
    }


def test_the_policy_schema_describes_fix() -> None:
    schema = policy_json_schema()
    rule = {
        "id": "R-1",
        "title": "t",
        "severity": "low",
        "rationale": "r",
        "remediation": "m",
        "check": {"fact": "effective_mode", "equals": 0},
        "fix": {"set_value": {"type": "REG_DWORD", "data": 0}, "restart_service": "PolicyAgent"},
    }
    jsonschema.validate({"name": "p", "rules": [rule]}, schema)
    rule["fix"] = {"set_value": {"type": "REG_SZ", "data": 0}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "p", "rules": [rule]}, schema)


def observation(version: str, sp: int, *reads: KeyRead) -> Observation:
    """Return a read host with these keys."""
    target = Target(name="h", address="192.0.2.1", port=5985)
    return Observation(target=target, os=OsInfo(version=version, service_pack=sp), keys=reads)


def value(key: str, type_: str, data: int | str | None, name: str = VALUE_NAME) -> KeyRead:
    """Return a key read holding the value."""
    return KeyRead(key=key, key_present=True, value=RegistryValue(name=name, type=type_, data=data))


def test_fixed_observation_writes_the_applicable_key_and_deletes_strays() -> None:
    fix = Fix(set_value=SetValue(type="REG_DWORD", data=0), delete_strays=True)
    before = observation("10.0.19045", 0, value(IPSEC_KEY, "REG_DWORD", 2), value(POLICYAGENT_KEY, "REG_SZ", "2"))
    after = fixed_observation(before, fix)
    assert after is not None
    setting = assess(after)
    assert setting is not None
    assert (setting.raw_type, setting.raw_value, setting.stray) == ("REG_DWORD", 0, ())
    xp = observation("5.1.2600", 2, KeyRead(key=IPSEC_KEY, key_present=False), value(POLICYAGENT_KEY, "REG_DWORD", 1))
    xp_after = fixed_observation(xp, fix)
    assert xp_after is not None
    assert xp_after.key(IPSEC_KEY) == value(IPSEC_KEY, "REG_DWORD", 0)
    assert xp_after.key(POLICYAGENT_KEY) == KeyRead(key=POLICYAGENT_KEY, key_present=True)


def test_fixed_observation_keeps_a_stored_spelling() -> None:
    fix = Fix(set_value=SetValue(type="REG_DWORD", data=0))
    before = observation("10.0.19045", 0, value(POLICYAGENT_KEY, "REG_DWORD", 2, name=VALUE_NAME.lower()))
    after = fixed_observation(before, fix)
    assert after is not None
    assert after.key(POLICYAGENT_KEY) == value(POLICYAGENT_KEY, "REG_DWORD", 0, VALUE_NAME.lower())


@pytest.mark.parametrize(("version", "sp"), [("5.0.2195", 4), ("5.1.2600", 1), ("6.x", 0)])
def test_no_fix_is_simulated_where_no_key_applies(version: str, sp: int) -> None:
    fix = Fix(set_value=SetValue(type="REG_DWORD", data=0), delete_strays=True)
    assert fixed_observation(observation(version, sp, value(IPSEC_KEY, "REG_DWORD", 2)), fix) is None


def test_policy_test_checks_that_fixes_fix(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = policy_file(tmp_path, "fix: {set_value: {type: REG_DWORD, data: 1}, restart_service: PolicyAgent}")
    out = io.StringIO()
    assert run_test([str(good)], out) == 0, caplog.text
    assert "1/1 fail examples fixed by their rule's fix" in out.getvalue()  # the XP SP1 example: no key
    bad = policy_file(tmp_path, "fix: {set_value: {type: REG_DWORD, data: 2}}")
    caplog.clear()
    assert run_test([str(bad)], io.StringIO()) == 2
    assert "FAIL R-1 fix on examples.fail[0]" in caplog.text
    assert "still fail" in caplog.text
    assert run_validate([str(bad)], io.StringIO()) == 0  # valid, just wrong


def test_a_strays_only_fix_does_not_fix_a_mode_rule() -> None:
    policy = builtin_policy("baseline")
    wrong = policy.model_copy(
        update={"rules": [r.model_copy(update={"fix": Fix(delete_strays=True)}) for r in policy.rules]}
    )
    unfixed = {(o.rule_id, o.index) for o in check_fixes([wrong]) if not o.ok}
    assert ("NATT-001", 0) in unfixed
    assert all(rule == "NATT-001" or rule == "NATT-002" for rule, _ in unfixed)


def test_builtin_fixes_fix_every_simulable_fail_example() -> None:
    outcomes = check_fixes([builtin_policy("baseline")]) + check_fixes([builtin_policy("strict")])
    assert outcomes and all(o.ok for o in outcomes)
    assert sum(o.status is not None for o in outcomes) == 17
