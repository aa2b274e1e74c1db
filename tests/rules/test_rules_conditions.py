"""The check node as a discriminated union: each variant from YAML, its evaluation, and every refused shape."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from pydantic import ValidationError

from rules.compile import compile_condition
from rules.explain import explain
from rules.facts import example_facts
from rules.loader import load_policy, policy_json_schema
from rules.models import (
    AllOf,
    AnyOf,
    Equals,
    Exists,
    GreaterThan,
    In,
    LessThan,
    Matches,
    NoneOf,
    NotEquals,
    NotIn,
    parse_condition,
)
from scanner.core.yamlfile import FileError
from tests.support.rules_helpers import WIN10, observe, policy, rule

# Each variant as a policy author writes it, the model it becomes, and its truth on a Windows 10
# host storing REG_DWORD 1 (effective_mode 1, value present).
VARIANTS: list[tuple[str, type, bool]] = [
    ("{fact: effective_mode, equals: 1}", Equals, True),
    ("{fact: effective_mode, not_equals: 1}", NotEquals, False),
    ("{fact: effective_mode, in: [0, 1]}", In, True),
    ("{fact: effective_mode, not_in: [0, 1]}", NotIn, False),
    ("{fact: effective_mode, less_than: 2}", LessThan, True),
    ("{fact: os.version, greater_than: '6.3'}", GreaterThan, True),
    ("{fact: raw_value, exists: true}", Exists, True),
    ("{fact: value_name, matches: '^Assume'}", Matches, True),
    ("{all: [{fact: present, equals: true}, {fact: effective_mode, equals: 2}]}", AllOf, False),
    ("{any: [{fact: present, equals: false}, {fact: effective_mode, equals: 1}]}", AnyOf, True),
    ("{none: [{fact: effective_mode, equals: 2}]}", NoneOf, True),
]


def facts() -> dict[str, Any]:
    """Return the facts of a Windows 10 host whose value is REG_DWORD 1."""
    return example_facts({"raw_type": "REG_DWORD", "raw_value": 1})


@pytest.mark.parametrize(("text", "model", "truth"), VARIANTS)
def test_each_variant_parses_from_yaml_and_evaluates(text: str, model: type, truth: bool) -> None:
    node = parse_condition(yaml.safe_load(text))
    assert type(node) is model
    assert compile_condition(node).fn(facts()) is truth


@pytest.mark.parametrize(("text", "model", "truth"), VARIANTS)
def test_each_variant_decides_a_rule_and_explains_itself(text: str, model: type, truth: bool) -> None:
    p = policy(rule(check=yaml.safe_load(text)))
    (trace,) = explain(observe(WIN10, ("REG_DWORD", 1)), [p])
    assert trace.result.status.value == ("pass" if truth else "fail")
    assert trace.check is not None and trace.check.result is truth
    if issubclass(model, AllOf | AnyOf | NoneOf):
        assert trace.check.kind == model.COMBINATOR and trace.check.children
    else:
        assert trace.check.kind == "compare"
        assert trace.check.operator == model.OPERATOR
        assert trace.check.operand == yaml.safe_load(text)[model.OPERATOR]


def test_nested_nodes_keep_their_variants() -> None:
    node = parse_condition({"all": [{"none": [{"fact": "stray", "exists": True}]}, {"fact": "group", "in": [None]}]})
    assert isinstance(node, AllOf)
    inner, last = node.children
    assert isinstance(inner, NoneOf) and isinstance(inner.children[0], Exists)
    assert isinstance(last, In) and last.operand == [None]


def test_a_validated_node_validates_as_itself() -> None:
    node = parse_condition({"fact": "effective_mode", "not_in": [2]})
    again = parse_condition(node)
    assert type(again) is NotIn and again == node


def test_json_schema_takes_exactly_one_variant_per_node() -> None:
    schema = policy_json_schema()
    for text, _, _ in VARIANTS:  # oneOf: a valid node matches exactly one variant
        jsonschema.validate({"name": "t", "rules": [rule(check=yaml.safe_load(text))]}, schema)
    for bad in (
        {"fact": "effective_mode", "equal": 0},
        {"fact": "effective_mode", "equals": 0, "in": [1]},
        {"all": [], "fact": "present"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"name": "t", "rules": [rule(check=bad)]}, schema)


def refused(data: Any) -> tuple[tuple[str | int, ...], str]:
    """Validate a node that must be refused; return the first error's path (tags dropped) and message."""
    with pytest.raises(ValidationError) as caught:
        parse_condition(data)
    first = caught.value.errors()[0]
    path = tuple(p for p in first["loc"] if not (isinstance(p, str) and "[" in p))
    return path, first["msg"]


def test_unknown_operator_is_named_at_its_key_with_a_suggestion() -> None:
    path, message = refused({"fact": "effective_mode", "equal": 0})
    assert path == ("equal",)
    assert "unknown key 'equal' (did you mean 'equals'?)" in message
    assert "with one OPERATOR of equals, not_equals, in, not_in" in message


def test_every_unknown_key_is_reported_even_next_to_a_valid_operator() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_condition({"fact": "effective_mode", "equals": 0, "colour": "red", "size": 1})
    assert [e["loc"][-2] for e in caught.value.errors()] == ["colour", "size"]


def test_python_spelling_of_in_is_not_an_alias() -> None:
    path, message = refused({"fact": "effective_mode", "in_": [1]})
    assert path == ("in_",) and "did you mean 'in'?" in message


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"fact": "effective_mode", "equals": 0, "in": [1]}, "exactly one operator (equals, "),
        ({"fact": "effective_mode"}, "got none"),
        ({"equals": 0}, "a comparison needs `fact` next to equals"),
        ({}, "a node needs `fact` and one operator"),
        ({"all": [{"fact": "present", "equals": True}], "fact": "present"}, "exactly one of: all, any, none"),
        ({"all": [], "any": []}, "exactly one of: all, any, none"),
        ([{"fact": "present", "equals": True}], "a check node is {fact: NAME, OPERATOR: VALUE}"),
        ({"any": []}, "any needs at least one node"),
        ({"fact": "os.version", "less_than": None}, "the bound is an integer"),
        ({"fact": "effective_mode", "exists": None}, "valid boolean"),
    ],
)
def test_refused_shapes_say_what_a_node_must_be(data: Any, needle: str) -> None:
    _, message = refused(data)
    assert needle in message


def test_unknown_operator_in_a_file_points_at_the_key(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: t
            rules:
              - id: R-1
                title: t
                severity: high
                rationale: r
                remediation: m
                check:
                  any:
                    - {fact: effective_mode, equals: 0}
                    - {fact: effective_mode, greter_than: 1}
            """
        ),
        encoding="utf-8",
    )
    with pytest.raises(FileError) as caught:
        load_policy(path)
    assert (caught.value.line, caught.value.column) == (11, 47)  # the value of the unknown key
    assert caught.value.message.startswith(
        "rules.0.check.any.1.greter_than: Value error, unknown key 'greter_than' (did you mean 'greater_than'?)"
    )
