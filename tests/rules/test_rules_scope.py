"""Scope selectors, fail-closed scoping, explicit precedence (`overrides`) and explain traces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rules.evaluate import evaluate, explain
from rules.loader import builtin_policy, load_policy
from scanner.core.results import Status
from tests.support.rules_helpers import (
    GARBLED,
    WIN10,
    WIN2000,
    WIN2003,
    XP_SP1,
    failed,
    observe,
    policy,
    rule,
    target,
)

ROLE_BASED = Path(__file__).resolve().parents[2] / "docs" / "examples" / "role-based-policy.yaml"


def status_of(scope: dict[str, Any], obs: Any) -> Status:
    """Evaluate one always-true rule with this scope."""
    check = {"fact": "os.family", "exists": True}
    return evaluate(obs, [policy(rule(check=check, scope=scope))])[0].status


def host(os: Any = WIN10, **kw: Any) -> Any:
    """Return an observation of a host with these inventory attributes."""
    return observe(os, None, tgt=target(**kw))


@pytest.mark.parametrize(
    ("scope", "kw", "selected"),
    [
        ({}, {}, True),
        ({"tags": {"role": {"equals": "vpn"}}}, {"tags": {"role": "vpn"}}, True),
        ({"tags": {"role": {"equals": "vpn"}}}, {"tags": {"role": "VPN"}}, False),  # case-sensitive
        ({"tags": {"role": {"equals": "vpn"}}}, {}, False),
        ({"tags": {"role": {"in": ["vpn", "dc"]}}}, {"tags": {"role": "dc"}}, True),
        ({"tags": {"role": {"not_in": ["vpn"]}}}, {}, True),  # absent tag is not in the list
        ({"tags": {"role": {"not_in": ["vpn"]}}}, {"tags": {"role": "vpn"}}, False),
        ({"tags": {"site": {"glob": "eu-*"}}}, {"tags": {"site": "eu-west"}}, True),
        ({"tags": {"site": {"glob": "eu-*"}}}, {"tags": {"site": "us-east"}}, False),
        ({"tags": {"site": {"glob": "eu-?"}}}, {"tags": {"site": "eu-12"}}, False),
        ({"tags": {"site": {"exists": True}}}, {"tags": {"site": ""}}, True),
        ({"tags": {"site": {"exists": False}}}, {"tags": {"site": "x"}}, False),
        ({"tags": {"a": {"equals": "1"}, "b": {"equals": "2"}}}, {"tags": {"a": "1", "b": "2"}}, True),
        (
            {"tags": {"a": {"equals": "1"}, "b": {"equals": "2"}}},
            {"tags": {"a": "1"}},
            False,
        ),  # all must hold
        ({"group": {"equals": "lab"}}, {"group": "lab"}, True),
        ({"group": {"in": ["lab", "dmz"]}}, {"group": "office"}, False),
        ({"group": {"glob": "lab*"}}, {}, False),
    ],
)
def test_inventory_selectors(scope, kw, selected):
    expected = Status.PASS if selected else Status.NOT_APPLICABLE
    assert status_of(scope, host(**kw)) is expected


@pytest.mark.parametrize(
    ("scope", "os", "selected"),
    [
        ({"os_family": {"in": ["vista-plus"]}}, WIN10, True),
        ({"os_family": {"in": ["vista-plus"]}}, WIN2003, False),
        ({"os_family": {"not_in": ["win2000"]}}, WIN2000, False),
        ({"os_family": {"not_in": ["win2000"]}}, XP_SP1, True),
        ({"os_version": {"at_least": "6.0"}}, WIN10, True),
        ({"os_version": {"below": "6.0"}}, WIN10, False),  # numeric: 10.0 is not below 6.0
        ({"os_version": {"at_least": "5.1", "below": "5.2"}}, XP_SP1, True),
        ({"os_version": {"at_least": "5.1", "below": "5.2"}}, WIN2003, False),
        ({"os_version": {"at_least": "10.0.20000"}}, WIN10, False),
        # an unparseable version cannot be scoped out: in scope, fail closed
        ({"os_family": {"in": ["xp-2003"]}}, GARBLED, True),
        ({"os_version": {"below": "5.0"}}, GARBLED, True),
    ],
)
def test_os_selectors(scope, os, selected):
    status = status_of(scope, host(os))
    assert (status is not Status.NOT_APPLICABLE) is selected


def test_out_of_scope_message_names_the_term():
    obs = host(tags={"role": "web"})
    scope = {"tags": {"role": {"equals": "vpn"}}, "os_family": {"in": ["vista-plus"]}}
    result = evaluate(obs, [policy(rule(scope=scope))])[0]
    assert result.message == "outside the rule's scope (tags.role)"


def test_unreadable_host_is_error_even_outside_scope():
    p = policy(rule(scope={"tags": {"role": {"equals": "vpn"}}}))
    assert evaluate(failed(), [p])[0].status is Status.ERROR


# --- precedence -----------------------------------------------------------------------------


def role_statuses(value: Any, **kw: Any) -> dict[str, str]:
    """Evaluate the documented role-based example policy."""
    obs = observe(WIN10, value, tgt=target(**kw))
    return {r.rule_id: r.status.value for r in evaluate(obs, [load_policy(ROLE_BASED)])}


def test_role_based_vpn_gateway_may_be_1_but_not_2():
    got = role_statuses(("REG_DWORD", 1), tags={"role": "vpn-gateway"})
    assert (got["ROLE-ALL"], got["ROLE-VPN"]) == ("not_applicable", "pass")
    got = role_statuses(("REG_DWORD", 2), tags={"role": "vpn-gateway"})
    assert (got["ROLE-ALL"], got["ROLE-VPN"]) == ("not_applicable", "fail")


def test_role_based_everyone_else_must_be_0():
    got = role_statuses(("REG_DWORD", 1), tags={"role": "web"})
    assert (got["ROLE-ALL"], got["ROLE-VPN"], got["ROLE-LAB"]) == ("fail", "not_applicable", "not_applicable")


def test_role_based_lab_on_private_and_public_addresses():
    assert role_statuses(("REG_DWORD", 2), group="lab", address="10.9.8.7")["ROLE-LAB"] == "pass"
    assert role_statuses(("REG_DWORD", 2), group="lab", address="203.0.113.9")["ROLE-LAB"] == "fail"
    assert role_statuses(("REG_DWORD", 2), group="lab", address="203.0.113.9")["ROLE-ALL"] == "not_applicable"


def test_superseded_message_names_the_winner():
    obs = observe(WIN10, ("REG_DWORD", 1), tgt=target(tags={"role": "vpn-gateway"}))
    result = next(r for r in evaluate(obs, [load_policy(ROLE_BASED)]) if r.rule_id == "ROLE-ALL")
    assert result.message == "superseded by ROLE-VPN (overrides)"


def chain(order: list[int]) -> list[dict[str, Any]]:
    """A overrides B overrides C; A applies to role=a, B to role in (a, b), C to everyone."""
    rules = [
        rule("A", scope={"tags": {"role": {"equals": "a"}}}, overrides=["B"]),
        rule("B", scope={"tags": {"role": {"in": ["a", "b"]}}}, overrides=["C"]),
        rule("C"),
    ]
    return [rules[i] for i in order]


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 1, 0], [1, 2, 0]])
def test_override_chain_is_independent_of_file_order(order):
    p = policy(*chain(order))

    def got(role: str) -> dict[str, str]:
        obs = observe(WIN10, ("REG_DWORD", 0), tgt=target(tags={"role": role}))
        return {r.rule_id: r.status.value for r in evaluate(obs, [p])}

    # role a: A decides, B is superseded, so B no longer supersedes C: C decides too
    assert got("a") == {"A": "pass", "B": "not_applicable", "C": "pass"}
    assert got("b") == {"A": "not_applicable", "B": "pass", "C": "not_applicable"}
    assert got("z") == {"A": "not_applicable", "B": "not_applicable", "C": "pass"}


def test_overrides_across_policies():
    mine = policy(
        rule("MINE-1", {"fact": "effective_mode", "in": [0, 1]}, overrides=["NATT-001"]), name="mine"
    )
    results = evaluate(observe(WIN10, ("REG_DWORD", 2)), [builtin_policy("baseline"), mine])
    got = {r.rule_id: r.status.value for r in results}
    assert got["NATT-001"] == "not_applicable"
    assert got["MINE-1"] == "fail"
    assert [r.rule_id for r in results] == sorted(got)


# --- explain --------------------------------------------------------------------------------


def test_explain_shows_facts_scope_and_every_node():
    obs = observe(WIN10, ("REG_SZ", "2"))
    traces = {t.rule_id: t for t in explain(obs, [builtin_policy("baseline")])}
    t = traces["NATT-002"]
    assert t.scope.in_scope is True
    assert t.scope.terms == {"os_family": True}
    assert t.facts == {"present": True, "raw_type": "REG_SZ", "raw_value": "2"}
    assert t.check is not None
    assert t.check.kind == "any"
    assert t.check.result is False
    first, second = t.check.children
    assert (first.fact, first.operator, first.operand, first.value, first.result) == (
        "present",
        "equals",
        False,
        True,
        False,
    )
    assert [c.result for c in second.children] == [False, False]
    assert t.result.status is Status.FAIL
    t = explain(observe(WIN2000), [builtin_policy("baseline")])[0]
    assert t.scope.terms == {"os_family": False}
    assert t.check is None


def test_explain_unknown_and_superseded_and_error():
    t = explain(observe(WIN10, ("REG_DWORD", 3)), [builtin_policy("baseline")])[0]
    assert t.facts == {"effective_mode": "unknown"}
    assert t.check is not None
    assert t.check.result is None
    obs = observe(WIN10, ("REG_DWORD", 1), tgt=target(tags={"role": "vpn-gateway"}))
    t = next(t for t in explain(obs, [load_policy(ROLE_BASED)]) if t.rule_id == "ROLE-ALL")
    assert t.overridden_by == "ROLE-VPN"
    assert t.check is None
    traces = explain(failed(), [builtin_policy("baseline")])
    assert {t.result.status for t in traces} == {Status.ERROR}
    assert all(t.check is None for t in traces)
    assert traces[0].model_dump(mode="json")["result"]["status"] == "error"
