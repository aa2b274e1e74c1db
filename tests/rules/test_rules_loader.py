"""Policy files: every refusal names file:line:column and the field; built-ins; sets; JSON Schema."""

from __future__ import annotations

import textwrap
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from rules.loader import builtin_policy, load_policy, policy_json_schema, resolve_policies
from rules.models import PolicyError
from scanner.core.yamlfile import MAX_BYTES, FileError

GOOD = """\
name: t
rules:
  - id: R-1
    title: t
    severity: high
    rationale: r
    remediation: m
    check: {fact: effective_mode, equals: 0}
  - id: R-2
    title: t
    severity: low
    rationale: r
    remediation: m
    check:
      all:
        - {fact: effective_mode, equals: 0}
        - {fact: value_name, matches: "^A"}
"""


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    """Write a policy file and return its path."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def refused(tmp_path: Path, text: str) -> FileError:
    """Load text that must be refused and return the error."""
    path = write(tmp_path, text)
    with pytest.raises(FileError) as info:
        load_policy(path)
    assert str(info.value).startswith(str(path) + ":")
    return info.value


def test_good_file_loads(tmp_path):
    p = load_policy(write(tmp_path, GOOD))
    assert p.name == "t"
    assert [r.id for r in p.rules] == ["R-1", "R-2"]
    assert p.source == str(tmp_path / "p.yaml")
    assert p.rule_position("R-2") == (9, 9)


@pytest.mark.parametrize(
    ("old", "new", "line", "col", "needle"),
    [
        # duplicate rule id: the line of the second
        ("id: R-2", "id: R-1", 9, 9, "rules.1.id: duplicate rule id 'R-1' (first on line 3)"),
        # unknown field (extra="forbid")
        (
            "    rationale: r\n",
            "    rationale: r\n    colour: red\n",
            7,
            13,
            "rules.0.colour: unknown field 'colour' (known: ",
        ),
        # unknown operator
        (
            "{fact: effective_mode, equals: 0}\n  - id",
            "{fact: effective_mode, equal: 0}\n  - id",
            8,
            42,
            "equal",
        ),
        # unknown fact
        (
            "{fact: effective_mode, equals: 0}\n  - id",
            "{fact: effective_mod, equals: 0}\n  - id",
            8,
            19,
            "fact",
        ),
        # bad regex, refused at load
        ('"^A"', '"(A"', 17, 11, "bad regular expression"),
        # bad severity
        ("severity: low", "severity: severe", 11, 15, "rules.1.severity"),
        # operand of the wrong type for the fact
        ("effective_mode, equals: 0}\n  - id", 'effective_mode, equals: "0"}\n  - id', 8, 12, "is a string"),
        # two operators in one comparison
        ("equals: 0}\n  - id", "equals: 0, in: [1]}\n  - id", 8, 12, "exactly one operator"),
        # a closed set of strings: a typo is refused
        (
            '{fact: value_name, matches: "^A"}',
            "{fact: integrity, equals: okay}",
            17,
            11,
            "integrity is one of",
        ),
        # less_than on a string fact
        ('{fact: value_name, matches: "^A"}', "{fact: raw_type, less_than: 3}", 17, 11, "less_than applies"),
        # a list fact only takes exists
        ('{fact: value_name, matches: "^A"}', "{fact: stray, equals: 0}", 17, 11, "only `exists`"),
        # bad OS family in a scope
        (
            "    check: {fact",
            "    scope: {os_family: {in: [win95]}}\n    check: {fact",
            8,
            30,
            "os_family.in.0",
        ),
        # empty version range
        (
            "    check: {fact",
            "    scope: {os_version: {at_least: '6.0', below: '5.0'}}\n    check: {fact",
            8,
            25,
            "empty",
        ),
        # examples: unknown fact names and wrong types are refused at load too
        (
            "    check: {fact",
            "    examples: {pass: [{effective_mod: 0}]}\n    check: {fact",
            8,
            23,
            "examples.pass.0",
        ),
        (
            "    check: {fact",
            "    examples: {fail: [{present: 'yes'}]}\n    check: {fact",
            8,
            23,
            "true or false",
        ),
        # overrides: itself, and a cycle
        ("    check: {fact", "    overrides: [R-1]\n    check: {fact", 3, 5, "cannot override itself"),
        ("    severity: low\n", "    severity: low\n    overrides: [R-1]\n", None, None, "override cycle"),
        # empty rules
        ("rules:\n", "rules: []\nx:\n", 2, 8, None),
    ],
)
def test_refused_with_position(tmp_path, old, new, line, col, needle):
    text = GOOD.replace(old, new, 1)
    if needle == "override cycle":
        text = text.replace("    check: {fact", "    overrides: [R-2]\n    check: {fact", 1)
        line, col = 3, 9
    assert text != GOOD
    err = refused(tmp_path, text)
    assert (err.line, err.column) == (line, col), str(err)
    if needle:
        assert needle in err.message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (GOOD.replace("    title: t\n", "    title: t\n    title: u\n", 1), "duplicate key 'title'"),
        (
            GOOD.replace("severity: high", "severity: &s high").replace("severity: low", "severity: *s"),
            "aliases",
        ),
        (GOOD.replace("severity: high", "severity: !!python/object:os.system high"), "tag"),
        (GOOD.replace("rules:", "rules: [", 1), ""),
    ],
)
def test_yaml_hardening_refusals(tmp_path, text, needle):
    err = refused(tmp_path, text)
    assert err.line is not None
    assert needle in err.message


def test_oversized_file_refused_unread(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (MAX_BYTES + 1))
    with pytest.raises(FileError, match="limit"):
        load_policy(path)


def test_missing_file_is_file_error(tmp_path):
    with pytest.raises(FileError):
        load_policy(tmp_path / "absent.yaml")


def test_builtins_and_unknown_builtin():
    assert builtin_policy("baseline").name == "baseline"
    assert [r.id for r in builtin_policy("strict").rules] == [f"STRICT-00{i}" for i in range(1, 5)]
    assert builtin_policy("baseline") is builtin_policy("baseline")
    with pytest.raises(PolicyError, match="no built-in policy 'nope'"):
        builtin_policy("nope")


def test_resolve_defaults_to_baseline_and_mixes_files(tmp_path):
    assert [p.name for p in resolve_policies([])] == ["baseline"]
    path = write(tmp_path, GOOD)
    assert [p.name for p in resolve_policies(["strict", str(path)])] == ["strict", "t"]


def test_resolve_refuses_duplicate_ids_across_files(tmp_path):
    a = write(tmp_path, GOOD, "a.yaml")
    b = write(tmp_path, GOOD.replace("name: t", "name: u"), "b.yaml")
    with pytest.raises(PolicyError) as info:
        resolve_policies([str(a), str(b)])
    assert (info.value.path, info.value.line, info.value.column) == (str(b), 3, 9)
    assert "duplicate rule id 'R-1'" in str(info.value)


def test_override_of_a_rule_in_another_policy(tmp_path):
    text = GOOD.replace("id: R-1", "id: X-1").replace("id: R-2", "id: X-2")
    path = write(tmp_path, text.replace("    check: {fact", "    overrides: [NATT-001]\n    check: {fact", 1))
    assert load_policy(path).rules[0].overrides == ["NATT-001"]  # a single file may point outside itself
    assert len(resolve_policies(["baseline", str(path)])) == 2
    with pytest.raises(PolicyError) as info:
        resolve_policies([str(path)])  # ...but the set must define it
    assert (info.value.line, info.value.column) == (3, 9)
    assert "overrides 'NATT-001', which no loaded policy defines" in str(info.value)


def test_json_schema_accepts_shipped_policies_and_rejects_bad_ones():
    schema = policy_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    root = Path(__file__).resolve().parents[2]
    files = [
        root / "rules" / "policies" / "baseline.yaml",
        root / "rules" / "policies" / "strict.yaml",
        root / "docs" / "examples" / "role-based-policy.yaml",
    ]
    for path in files:
        jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), schema)
    bad = yaml.safe_load(GOOD)
    bad["rules"][0]["severity"] = "severe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    bad = yaml.safe_load(GOOD)
    bad["rules"][0]["colour"] = "red"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
