"""Every operator, type-aware comparison, Kleene fail-closed logic and the compiled closures."""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.evaluate import (
    _identity,
    _uid,
    compile_condition,
    compile_policies,
    decide,
    evaluate,
    evaluate_facts,
    explain,
    ruleset,
)
from rules.facts import NOT_APPLICABLE, UNKNOWN, address_private, example_facts, extract_facts
from rules.loader import builtin_policy, load_policy
from rules.models import Condition
from scanner.core.results import NAMESPACE, Status, finding_uid
from scanner.core.semantics import assess
from tests.support.rules_helpers import GARBLED, WIN10, WIN2000, WIN2003, XP_SP1, observe, policy, rule, target

ROLE_BASED = Path(__file__).resolve().parents[2] / "docs" / "examples" / "role-based-policy.yaml"


def run(check: dict[str, Any], **facts: Any) -> bool | None:
    """Compile a check and run it on example facts (defaults: a Windows 10 host, value absent)."""
    return compile_condition(Condition.model_validate(check)).fn(example_facts(facts))


def fact_run(check: dict[str, Any], facts: dict[str, Any]) -> bool | None:
    """Compile a check and run it on a raw fact mapping."""
    return compile_condition(Condition.model_validate(check)).fn(facts)


@pytest.mark.parametrize(
    ("check", "facts", "expected"),
    [
        ({"fact": "effective_mode", "equals": 0}, {}, True),
        ({"fact": "effective_mode", "equals": 0}, {"raw_type": "REG_DWORD", "raw_value": 2}, False),
        ({"fact": "effective_mode", "not_equals": 2}, {"raw_type": "REG_DWORD", "raw_value": 1}, True),
        ({"fact": "effective_mode", "in": [0, 1]}, {"raw_type": "REG_DWORD", "raw_value": 2}, False),
        ({"fact": "effective_mode", "not_in": [2]}, {"raw_type": "REG_DWORD", "raw_value": 1}, True),
        ({"fact": "effective_mode", "less_than": 2}, {"raw_type": "REG_DWORD", "raw_value": 1}, True),
        ({"fact": "effective_mode", "greater_than": 0}, {"raw_type": "REG_DWORD", "raw_value": 1}, True),
        ({"fact": "effective_mode", "greater_than": 1}, {"raw_type": "REG_DWORD", "raw_value": 1}, False),
        ({"fact": "raw_value", "exists": True}, {}, False),
        ({"fact": "raw_value", "exists": False}, {}, True),
        ({"fact": "stray", "exists": True}, {"stray": [{"type": "REG_DWORD", "data": 2}]}, True),
        ({"fact": "stray", "exists": False}, {"stray": [{"type": "REG_DWORD", "data": 2}]}, False),
        ({"fact": "stray_count", "equals": 1}, {"stray": [{}]}, True),
        ({"fact": "value_name", "matches": "^Assume"}, {"raw_type": "REG_DWORD", "raw_value": 0}, True),
        ({"fact": "value_name", "matches": "^assume"}, {"raw_type": "REG_DWORD", "raw_value": 0}, False),
        ({"fact": "value_name", "matches": "x"}, {}, False),  # null never matches
        (
            {"fact": "raw_value", "matches": "2"},
            {"raw_type": "REG_DWORD", "raw_value": 2},
            False,
        ),  # not a string
        ({"fact": "os.version", "less_than": "6.0"}, {"os.version": "5.2.3790"}, True),
        (
            {"fact": "os.version", "greater_than": "6.3"},
            {"os.version": "10.0.19045"},
            True,
        ),  # numeric, not text
        ({"fact": "os.version", "less_than": "10.0"}, {"os.version": "10.0.19045"}, False),
        ({"fact": "os.build", "greater_than": 19000}, {}, True),
        ({"fact": "os.family", "equals": "vista-plus"}, {}, True),
        (
            {"fact": "integrity", "in": ["invalid_type", "invalid_value"]},
            {"raw_type": "REG_SZ", "raw_value": "1"},
            True,
        ),
        ({"fact": "tags.role", "equals": "vpn"}, {"tags.role": "vpn"}, True),
        ({"fact": "tags.role", "exists": False}, {}, True),
        ({"fact": "group", "equals": None}, {}, True),
        ({"fact": "address_private", "equals": True}, {"address": "172.31.255.255"}, True),
        ({"fact": "address_private", "equals": True}, {"address": "172.32.0.1"}, False),
        ({"fact": "present", "equals": True}, {"raw_type": "REG_DWORD", "raw_value": 0}, True),
        ({"fact": "key_present", "equals": False}, {"key_present": False}, True),
        (
            {"fact": "name_canonical", "equals": False},
            {"raw_type": "REG_DWORD", "raw_value": 0, "value_name": "x"},
            True,
        ),
        ({"all": [{"fact": "present", "equals": False}, {"fact": "effective_mode", "equals": 0}]}, {}, True),
        ({"any": [{"fact": "present", "equals": True}, {"fact": "effective_mode", "equals": 1}]}, {}, False),
        ({"none": [{"fact": "present", "equals": True}, {"fact": "effective_mode", "equals": 1}]}, {}, True),
    ],
)
def test_operator(check, facts, expected):
    assert run(check, **facts) is expected


@pytest.mark.parametrize(
    ("stored_type", "stored", "operand", "expected"),
    [
        ("REG_SZ", "2", 2, False),  # REG_SZ "2" is not 2
        ("REG_DWORD", 2, "2", False),
        ("REG_DWORD", 1, True, False),  # bool is not int
        ("REG_DWORD", 0, False, False),
        ("REG_QWORD", 2, 2, True),
        ("REG_MULTI_SZ", ["2"], "2", False),  # a list is not a scalar
    ],
)
def test_equality_is_type_aware(stored_type, stored, operand, expected):
    facts = {"raw_type": stored_type, "raw_value": stored}
    assert run({"fact": "raw_value", "equals": operand}, **facts) is expected
    assert run({"fact": "raw_value", "in": [operand]}, **facts) is expected


SCALARS = st.one_of(st.booleans(), st.integers(-(2**33), 2**33), st.text(max_size=6), st.none())


@given(value=SCALARS, operand=SCALARS)
def test_property_equals_is_type_and_value_identity(value, operand):
    facts = {"raw_value": value, "tags": {}}
    same = type(value) is type(operand) and value == operand
    assert fact_run({"fact": "raw_value", "equals": operand}, facts) is same
    assert fact_run({"fact": "raw_value", "not_equals": operand}, facts) is (not same)
    assert fact_run({"fact": "raw_value", "in": [operand, "zz-never"]}, facts) is (
        same or value == "zz-never"
    )


@given(
    value=st.one_of(SCALARS, st.lists(st.text(max_size=3), max_size=3).map(tuple)), bound=st.integers(-5, 5)
)
def test_property_ordering_only_on_true_ints_and_never_raises(value, bound):
    facts = {"raw_value": value, "tags": {}}
    is_int = type(value) is int
    assert fact_run({"fact": "raw_value", "less_than": bound}, facts) is (is_int and value < bound)
    assert fact_run({"fact": "raw_value", "greater_than": bound}, facts) is (is_int and value > bound)


@given(value=st.one_of(SCALARS, st.lists(st.text(max_size=3), max_size=2).map(tuple)))
def test_property_matches_only_strings(value):
    facts = {"raw_value": value, "tags": {}}
    assert fact_run({"fact": "raw_value", "matches": ""}, facts) is isinstance(value, str)


# --- fail closed -------------------------------------------------------------------------------

OPS = [
    ("equals", 0),
    ("not_equals", 2),
    ("in", [0, 1]),
    ("not_in", [2]),
    ("less_than", 2),
    ("greater_than", 0),
    ("exists", True),
    ("exists", False),
]


@pytest.mark.parametrize(("op", "operand"), OPS)
def test_unknown_fact_never_decides_a_comparison(op, operand):
    assert fact_run({"fact": "effective_mode", op: operand}, {"effective_mode": UNKNOWN, "tags": {}}) is None


@pytest.mark.parametrize(("op", "operand"), OPS)
@pytest.mark.parametrize("wrap", ["all", "any", "none", None])
def test_unknown_effective_mode_never_passes_a_rule(op, operand, wrap):
    check: dict[str, Any] = {"fact": "effective_mode", op: operand}
    if wrap:
        check = {wrap: [check]}
    results = evaluate(observe(WIN10, ("REG_DWORD", 3)), [policy(rule(check=check))])
    assert results[0].status is Status.FAIL
    assert "fail closed" in results[0].message


LEAF_FACTS = {
    "effective_mode": [0, 1, 2],
    "present": [True, False],
    "raw_value": [0, 2, "2", None],
    "address_private": [True, False],
}


def leaves() -> st.SearchStrategy[dict[str, Any]]:
    """Comparisons over a few facts with operands drawn from their domains."""
    return st.sampled_from(
        [
            {"fact": f, op: (v if op not in ("in", "not_in") else [v])}
            for f, values in LEAF_FACTS.items()
            for v in values
            for op in ("equals", "not_equals", "in", "not_in")
            if not (f in ("present", "address_private") and not isinstance(v, bool))
            and not (f == "effective_mode" and not isinstance(v, int))
        ]
        + [{"fact": "effective_mode", "less_than": 2}, {"fact": "raw_value", "exists": True}]
    )


CHECKS = st.recursive(
    leaves(),
    lambda kids: st.one_of(
        st.lists(kids, min_size=1, max_size=3).map(lambda k: {"all": k}),
        st.lists(kids, min_size=1, max_size=3).map(lambda k: {"any": k}),
        st.lists(kids, min_size=1, max_size=3).map(lambda k: {"none": k}),
    ),
    max_leaves=6,
)
FACT_VALUES = st.fixed_dictionaries(
    {f: st.sampled_from([*values, UNKNOWN]) for f, values in LEAF_FACTS.items()}
)


@settings(max_examples=300, deadline=None)
@given(check=CHECKS, facts=FACT_VALUES)
def test_property_a_true_verdict_holds_for_every_value_of_the_unknowns(check, facts):
    facts = {**facts, "tags": {}}
    node = compile_condition(Condition.model_validate(check))
    verdict = node.fn(facts)
    unknown = [f for f, v in facts.items() if v is UNKNOWN]
    completions = [
        dict(facts, **dict(zip(unknown, combo, strict=True)))
        for combo in itertools.product(*(LEAF_FACTS[f] for f in unknown))
    ]
    outcomes = {node.fn(c) for c in completions}
    assert None not in outcomes  # with every fact known, the logic is two-valued
    if verdict is not None:
        assert outcomes == {verdict}  # a decided verdict does not depend on the unknowns
    else:
        assert unknown  # undecided only when something is unknown


@settings(max_examples=200, deadline=None)
@given(check=CHECKS, facts=FACT_VALUES)
def test_property_rule_status_is_pass_only_when_the_check_is_true(check, facts):
    full = example_facts({})
    full.update(facts)
    verdict = compile_condition(Condition.model_validate(check)).fn(full)
    (result,) = evaluate_facts(full, [policy(rule(check=check))])
    assert result.status is (Status.PASS if verdict is True else Status.FAIL)


def test_not_applicable_fact_makes_rule_not_applicable():
    facts = example_facts({})
    facts["effective_mode"] = NOT_APPLICABLE
    (result,) = evaluate_facts(facts, [policy(rule())])
    assert result.status is Status.NOT_APPLICABLE


def test_dns_name_address_is_unknown_privacy_but_kleene_keeps_decided_passes():
    check = {"any": [{"fact": "effective_mode", "equals": 0}, {"fact": "address_private", "equals": True}]}
    p = policy(rule(check=check))
    named = target(address="host.corp.example")
    assert evaluate(observe(WIN10, None, tgt=named), [p])[0].status is Status.PASS
    failing = evaluate(observe(WIN10, ("REG_DWORD", 2), tgt=named), [p])[0]
    assert failing.status is Status.FAIL
    assert "names are never resolved" in failing.message
    assert "host.corp.example" in failing.message


# --- facts ------------------------------------------------------------------------------------


@given(st.ip_addresses(v=4))
def test_property_private_fast_path_agrees_with_ipaddress(ip):
    nets = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
    assert address_private(str(ip)) is any(ip in n for n in nets)


@given(st.text(alphabet="0123456789.:abcdef[]x ", max_size=20))
def test_property_private_never_raises_and_names_are_unknown(text):
    got = address_private(text)
    try:
        ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        assert got is UNKNOWN
    else:
        assert isinstance(got, bool)


def test_private_ranges_edges_and_ipv6():
    assert address_private("10.255.255.255") is True
    assert address_private("192.168.0.1") is True
    assert address_private("192.169.0.1") is False
    assert address_private("010.0.0.1") is UNKNOWN  # leading zeros are ambiguous: not an address
    assert address_private("::ffff:10.1.2.3") is True
    assert address_private("fd00::1") is False  # the KB names only the IPv4 ranges


@given(rule_id=st.from_regex(r"[A-Z][A-Z0-9-]{0,10}", fullmatch=True), host=st.text(max_size=30))
def test_property_inlined_uid_equals_finding_uid(rule_id, host):
    prefix = hashlib.sha1(NAMESPACE.bytes + f"{rule_id}|".encode())
    assert _uid(prefix, _identity(host)) == finding_uid(rule_id, host)


def test_evaluate_does_not_mutate_and_is_deterministic():
    obs = observe(WIN10, ("REG_DWORD", 2), stray=("REG_MULTI_SZ", ["a"]))
    before = obs.model_dump()
    policies = [policy(rule(), rule("T-2", {"fact": "stray", "exists": False}))]
    assert evaluate(obs, policies) == evaluate(obs, policies)
    assert obs.model_dump() == before


@settings(max_examples=100, deadline=None)
@given(check=CHECKS, value=st.sampled_from([None, ("REG_DWORD", 1), ("REG_DWORD", 5), ("REG_SZ", "2")]))
def test_property_explain_agrees_with_evaluate(check, value):
    policies = [policy(rule(check=check))]
    obs = observe(WIN10, value)
    (trace,) = explain(obs, policies)
    assert trace.result == evaluate(obs, policies)[0]
    assert trace.check is not None
    assert set(trace.facts) <= set(LEAF_FACTS)


OSES = st.sampled_from(
    [WIN10, WIN2003, XP_SP1, WIN2000, GARBLED, GARBLED.model_copy(update={"version": "eleven"})]
)
VALUES = st.sampled_from(
    [
        None,
        ("REG_DWORD", 0),
        ("REG_DWORD", 1),
        ("REG_DWORD", 2),
        ("REG_DWORD", 3),
        ("REG_SZ", "2"),
        ("REG_MULTI_SZ", ["2"]),
    ]
)
TARGETS = st.builds(
    target,
    name=st.sampled_from(["a", "b"]),
    address=st.sampled_from(["10.0.0.1", "198.51.100.1", "host.example", "other.example"]),
    tags=st.dictionaries(
        st.sampled_from(["role", "decommission"]), st.sampled_from(["vpn-gateway", "CHG-1", "x"])
    ),
    group=st.sampled_from([None, "lab", "office"]),
)


@settings(max_examples=300, deadline=None)
@given(
    os=OSES,
    value=VALUES,
    stray=st.sampled_from([None, ("REG_DWORD", 2), ("REG_MULTI_SZ", ["x"])]),
    tgt=TARGETS,
)
def test_property_memoised_decisions_equal_fresh_ones(os, value, stray, tgt):
    policies = [builtin_policy("baseline"), builtin_policy("strict"), load_policy(ROLE_BASED)]
    rs = ruleset(policies)
    obs = observe(os, value, stray=stray, tgt=tgt)
    setting = assess(obs)
    assert setting is not None
    facts = extract_facts(obs, setting)
    fresh = compile_policies(policies)  # no memo yet
    assert rs.decide(facts) == decide(fresh, facts)
