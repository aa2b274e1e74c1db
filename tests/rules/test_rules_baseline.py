"""The built-in baseline on every row of docs/domain.md#effective-mode, with hand-built Observations."""

from __future__ import annotations

import pytest

from rules.evaluate import evaluate
from rules.loader import builtin_policy, resolve_policies
from scanner.core.models import Observation, Stage
from scanner.core.results import Severity, Status, finding_uid
from tests.support.rules_helpers import GARBLED, WIN10, WIN2000, WIN2003, XP_SP1, XP_SP2, failed, observe

P = "pass"
F = "fail"
NA = "not_applicable"


def statuses(observation: Observation, name: str = "baseline") -> dict[str, str]:
    """Return rule id -> status for one host."""
    return {r.rule_id: r.status.value for r in evaluate(observation, [builtin_policy(name)])}


@pytest.mark.parametrize(
    ("os", "value", "expected"),
    [
        # REG_DWORD 0, 1 or 2: that value, integrity ok
        (WIN10, ("REG_DWORD", 0), (P, P, P)),
        (WIN10, ("REG_DWORD", 1), (P, P, P)),
        (WIN10, ("REG_DWORD", 2), (F, P, P)),
        (WIN2003, ("REG_DWORD", 2), (F, P, P)),
        (XP_SP2, ("REG_DWORD", 1), (P, P, P)),
        # value absent: the default 0
        (WIN10, None, (P, P, P)),
        (WIN2003, None, (P, P, P)),
        # REG_DWORD outside 0..2: unknown mode, invalid value: fail closed
        (WIN10, ("REG_DWORD", 3), (F, F, P)),
        (WIN10, ("REG_DWORD", 4294967295), (F, F, P)),
        (WIN2003, ("REG_DWORD", 7), (F, F, P)),
        # any other type: mode 0 (Windows reads only a REG_DWORD), invalid type
        (WIN10, ("REG_SZ", "2"), (P, F, P)),
        (WIN10, ("REG_EXPAND_SZ", "2"), (P, F, P)),
        (WIN10, ("REG_QWORD", 2), (P, F, P)),
        (WIN10, ("REG_BINARY", "02000000"), (P, F, P)),
        (WIN10, ("REG_MULTI_SZ", ["2"]), (P, F, P)),
        (WIN10, ("REG_TYPE_9", None), (P, F, P)),
        # NT 5.0: not applicable; NT 5.1 before SP2: legacy mode 2
        (WIN2000, None, (NA, NA, NA)),
        (WIN2000, ("REG_DWORD", 2), (NA, NA, NA)),
        (XP_SP1, None, (F, NA, NA)),
        (XP_SP1, ("REG_DWORD", 0), (F, NA, NA)),
        # unparseable version: nothing is known, everything fails closed
        (GARBLED, ("REG_DWORD", 0), (F, F, F)),
    ],
)
def test_domain_table_rows(os, value, expected):
    got = statuses(observe(os, value))
    assert (got["NATT-001"], got["NATT-002"], got["NATT-003"]) == expected


def test_key_absent_is_the_default():
    assert set(statuses(observe(WIN10, None, key_present=False)).values()) == {P}


@pytest.mark.parametrize(
    ("os", "stray_type"), [(WIN10, "REG_DWORD"), (WIN2003, "REG_DWORD"), (WIN10, "REG_SZ")]
)
def test_stray_value_fails_natt003_only(os, stray_type):
    got = statuses(observe(os, ("REG_DWORD", 0), stray=(stray_type, 2)))
    assert got == {"NATT-001": P, "NATT-002": P, "NATT-003": F}


def test_stray_on_win2000_and_xp_pre_sp2_is_not_applicable():
    assert statuses(observe(WIN2000, stray=("REG_DWORD", 2)))["NATT-003"] == NA
    assert statuses(observe(XP_SP1, stray=("REG_DWORD", 2)))["NATT-003"] == NA


@pytest.mark.parametrize("stage", list(Stage))
def test_unreadable_host_is_error_for_every_rule_never_pass(stage):
    results = evaluate(failed(stage, "why"), [builtin_policy("baseline"), builtin_policy("strict")])
    assert len(results) == 7
    assert {r.status for r in results} == {Status.ERROR}
    assert all(f"({stage.value}/why)" in r.message for r in results)


def test_observation_without_os_facts_is_error():
    obs = observe(WIN10).model_copy(update={"os": None})
    assert set(statuses(obs).values()) == {"error"}


def test_results_sorted_with_stable_finding_ids_and_severities():
    results = evaluate(observe(WIN10, ("REG_DWORD", 2)), resolve_policies([]))
    assert [r.rule_id for r in results] == ["NATT-001", "NATT-002", "NATT-003"]
    assert [r.severity for r in results] == [Severity.HIGH, Severity.MEDIUM, Severity.LOW]
    assert all(r.finding_id == finding_uid(r.rule_id, "HOST1") for r in results)


def test_fail_messages_carry_evidence():
    (r1, r2, _) = evaluate(observe(WIN10, ("REG_DWORD", 4294967295)), [builtin_policy("baseline")])
    assert "fail closed" in r1.message
    assert "4294967295" in r1.message
    assert "outside the documented 0..2" in r1.message
    assert "raw_type='REG_DWORD'" in r2.message
    (r1, _, _) = evaluate(observe(XP_SP1), [builtin_policy("baseline")])
    assert r1.message.startswith("effective_mode=2")


def test_untrusted_value_text_is_escaped_and_truncated_in_messages():
    results = evaluate(observe(WIN10, ("REG_SZ", "\x1b[31m[bold]" + "x" * 500)), [builtin_policy("baseline")])
    message = next(r.message for r in results if r.rule_id == "NATT-002")
    assert "\x1b" not in message
    assert "\\x1b" in message
    assert len(message) < 400


@pytest.mark.parametrize(
    ("os", "value", "expected"),
    [
        (WIN10, None, (P, P, P, P)),
        (WIN10, ("REG_DWORD", 0), (P, P, P, P)),
        (WIN10, ("REG_DWORD", 1), (F, P, P, P)),
        (WIN10, ("REG_DWORD", 9), (F, F, P, P)),
        (WIN10, ("REG_SZ", "0"), (P, F, P, P)),
        (XP_SP1, None, (F, NA, NA, NA)),
        (WIN2000, None, (NA, NA, NA, NA)),
        (GARBLED, None, (F, F, F, F)),
    ],
)
def test_strict(os, value, expected):
    got = statuses(observe(os, value), "strict")
    assert tuple(got[f"STRICT-00{i}"] for i in range(1, 5)) == expected


def test_strict_flags_non_canonical_name_and_stray():
    got = statuses(observe(WIN10, ("REG_DWORD", 0), name=VALUE_LOWER, stray=("REG_DWORD", 0)), "strict")
    assert got == {"STRICT-001": P, "STRICT-002": P, "STRICT-003": F, "STRICT-004": F}


VALUE_LOWER = "assumeudpencapsulationcontextonsendrule"
