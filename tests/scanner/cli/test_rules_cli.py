"""`natt-audit policy validate|test`: exit codes and messages, through argparse as the CLI wires it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from rules.loader import builtin_policy
from scanner.cli import policy as cli
from scanner.cli.main import main
from scanner.cli.policy import run_examples

ROOT = Path(__file__).resolve().parents[3]
ROLE_BASED = str(ROOT / "docs" / "examples" / "role-based-policy.yaml")

RULE = """\
  - id: {rid}
    title: t
    severity: low
    rationale: r
    remediation: m
    check: {{fact: effective_mode, equals: 0}}
    examples:
      pass: [{passing}]
      fail: [{failing}]
"""


def policy_file(
    tmp_path: Path, passing: str = "{}", failing: str = "{raw_type: REG_DWORD, raw_value: 1}"
) -> str:
    """Write a one-rule policy with these examples."""
    path = tmp_path / "p.yaml"
    path.write_text("name: t\nrules:\n" + RULE.format(rid="T-1", passing=passing, failing=failing), "utf-8")
    return str(path)


def invoke(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run `natt-audit ARGV` in this process, as the CLI wires it."""
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_validate_builtins_and_example(capsys):
    code, out, err = invoke("policy", "validate", "baseline", "strict", ROLE_BASED, capsys=capsys)
    assert code == 0
    assert "valid: builtin:baseline: policy 'baseline', 3 rules" in out
    assert err == ""


def test_one_rule_and_one_example_read_as_one(tmp_path, capsys):
    path = tmp_path / "one.yaml"
    path.write_text("name: one\nrules:\n" + RULE.format(rid="T-1", passing="{}", failing="{}"))
    code, out, _ = invoke("policy", "validate", str(path), capsys=capsys)
    assert code == 0 and out == f"valid: {path}: policy 'one', 1 rule\n"


def test_validate_invalid_file_exits_2_with_position(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: t\nrules:\n" + RULE.format(rid="T-1", passing="{}", failing="{}").replace("low", "lowest")
    )
    code, _, err = invoke("policy", "validate", str(path), capsys=capsys)
    assert code == 2
    assert f"invalid: {path}:5:15: rules.0.severity" in err


def test_validate_checks_the_files_as_a_set(tmp_path, capsys):
    path = policy_file(tmp_path)
    code, _, err = invoke("policy", "validate", path, path, capsys=capsys)
    assert code == 2
    assert "duplicate rule id 'T-1'" in err


def test_validate_notes_missing_examples_but_accepts(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("name: t\nrules:\n" + RULE.split("    examples:")[0].format(rid="T-1"), "utf-8")
    code, _, err = invoke("policy", "validate", str(path), capsys=capsys)
    assert code == 0
    assert f"natt-audit: warning: {path}:3: rule T-1 lacks pass or fail examples" in err


def test_test_builtins_and_example_pass(capsys):
    code, out, _ = invoke("policy", "test", "baseline", "strict", ROLE_BASED, capsys=capsys)
    assert code == 0
    assert "74/74 examples as expected in 13 rules" in out


@pytest.mark.parametrize("missing", ["pass", "fail"])
def test_test_refuses_rule_without_both_kinds(tmp_path, capsys, missing):
    text = "name: t\nrules:\n" + RULE.format(rid="T-1", passing="{}", failing="{}")
    text = text.replace(f"      {missing}: [{{}}]\n", "")
    path = tmp_path / "p.yaml"
    path.write_text(text, "utf-8")
    code, _, err = invoke("policy", "test", str(path), capsys=capsys)
    assert code == 2
    assert f"refused: {path}:3:9: rule T-1: examples.{missing} missing" in err


def test_test_reports_a_wrong_example(tmp_path, capsys):
    path = policy_file(tmp_path, passing="{raw_type: REG_DWORD, raw_value: 2}")
    code, out, err = invoke("policy", "test", path, capsys=capsys)
    assert code == 2
    assert "FAIL T-1 examples.pass[0]" in err
    assert "expected pass, got fail" in err
    assert "1/2 examples as expected" in out


def test_test_invalid_file_exits_2(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("name: t\nrules: {}\n", "utf-8")
    code, _, err = invoke("policy", "test", str(path), capsys=capsys)
    assert code == 2
    assert f"invalid: {path}:2:8: rules" in err


def test_examples_take_the_real_path():
    outcomes = run_examples([builtin_policy("baseline")])
    assert outcomes
    assert all(o.ok for o in outcomes)
    by = {(o.rule_id, o.bucket, o.index): o for o in outcomes}
    # {raw_type: REG_DWORD, raw_value: 3} went through assess(): unknown mode, fail closed
    assert "fail closed" in by[("NATT-001", "fail", 1)].message
    assert by[("NATT-001", "not_applicable", 0)].message.startswith(
        "outside the rule's scope"
    )


def test_run_validate_to_streams():
    out = io.StringIO()
    assert cli.run_validate(["strict"], out) == 0
    assert "policy 'strict', 4 rules" in out.getvalue()
