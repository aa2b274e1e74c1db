"""`natt-audit policy validate|test|explain`: check policy files, and explain results."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from rules.compile import compile_policies
from rules.evaluate import evaluate_facts
from rules.facts import example_facts
from rules.fixcheck import check_fixes
from rules.loader import BUILTINS, builtin_policy, load_policy
from rules.models import Policy, PolicyError
from scanner.cli.explain import run_explain
from scanner.cli.options import Subparsers
from scanner.core.exitcodes import ExitCode
from scanner.core.logsetup import multiline_fields
from scanner.core.results import Status
from scanner.core.yamlfile import FileError

log = logging.getLogger("natt_audit")

_BUCKETS = (("pass_", "pass", Status.PASS), ("fail", "fail", Status.FAIL))
_OPTIONAL = (("not_applicable", "not_applicable", Status.NOT_APPLICABLE),)


def register(subparsers: Subparsers) -> None:
    """Add `policy validate FILE...`, `policy test FILE...` and `policy explain`."""
    policy = subparsers.add_parser("policy", help="validate and test policy files")
    policy.set_defaults(func=run)
    sub = policy.add_subparsers(dest="policy_command", required=True)
    validate = sub.add_parser("validate", help="load and validate policy files (exit 0 valid, 2 invalid)")
    validate.add_argument("files", nargs="+", metavar="FILE", help=f"policy file or built-in ({', '.join(BUILTINS)})")
    validate.set_defaults(policy_run=lambda args: run_validate(args.files))
    test = sub.add_parser("test", help="run every rule's pass/fail examples (exit 0 all as expected, 2 otherwise)")
    test.add_argument("files", nargs="+", metavar="FILE", help=f"policy file or built-in ({', '.join(BUILTINS)})")
    test.set_defaults(policy_run=lambda args: run_test(args.files))
    explain = sub.add_parser("explain", help="show how each result of one host in a JSON report was derived")
    explain.add_argument("--report", required=True, help="a JSON report written by `natt-audit scan -f json`")
    explain.add_argument("--host", required=True, help="the host's name as in the report")
    explain.add_argument(
        "-p",
        "--policy",
        action="append",
        default=[],
        metavar="POLICY",
        help="explain against these policies instead of the ones the report names",
    )
    explain.set_defaults(policy_run=lambda args: run_explain(args.report, args.host, args.policy, sys.stdout))


def run(args: argparse.Namespace) -> int:
    """Run the chosen `policy` sub-command and return its exit code."""
    return int(args.policy_run(args))


def _load_all(specs: Sequence[str]) -> list[Policy] | None:
    policies: list[Policy] = []
    failed = False
    for spec in specs:
        try:
            policies.append(builtin_policy(spec) if spec in BUILTINS else load_policy(spec))
        except (FileError, PolicyError) as exc:
            log.error("invalid: %s", exc, extra=multiline_fields(policy=spec))
            failed = True
    if failed:
        return None
    try:
        compile_policies(policies)  # the files as one set: duplicate ids across files, overrides, cycles
    except PolicyError as exc:
        log.error("invalid: %s", exc, extra=multiline_fields())
        return None
    return policies


def run_validate(specs: Sequence[str], out: TextIO | None = None) -> int:
    """Validate policy files (alone and as one set); 0 when all are valid, 2 otherwise."""
    out = out or sys.stdout
    policies = _load_all(specs)
    if policies is None:
        return ExitCode.USAGE
    for policy in policies:
        out.write(f"valid: {policy.source}: policy {policy.name!r}, {len(policy.rules)} rules\n")
        for rule in policy.rules:
            if not rule.examples.pass_ or not rule.examples.fail:
                line, _ = policy.rule_position(rule.id)
                where = f"{policy.source}:{line}" if line else policy.source
                log.warning("%s: rule %s lacks pass or fail examples (`policy test` refuses it)", where, rule.id)
    return ExitCode.OK


@dataclass(frozen=True)
class ExampleOutcome:
    """One example of one rule: the status it must give and the one it gave."""

    policy: str
    rule_id: str
    bucket: str
    index: int
    expected: Status
    actual: Status
    message: str

    @property
    def ok(self) -> bool:
        """Return whether the rule gave the expected status."""
        return self.expected is self.actual


def run_examples(policies: Sequence[Policy]) -> list[ExampleOutcome]:
    """Evaluate every example of every rule through the real path (Observation, assess, facts, rules)."""
    outcomes = []
    for policy in policies:
        for rule in policy.rules:
            for attr, bucket, expected in (*_BUCKETS, *_OPTIONAL):
                for i, example in enumerate(getattr(rule.examples, attr)):
                    results = evaluate_facts(example_facts(example), policies)
                    result = next(r for r in results if r.rule_id == rule.id)
                    outcomes.append(
                        ExampleOutcome(policy.source, rule.id, bucket, i, expected, result.status, result.message)
                    )
    return outcomes


def missing_examples(policies: Sequence[Policy]) -> list[str]:
    """Return one message per rule that lacks pass or fail examples."""
    problems = []
    for policy in policies:
        for rule in policy.rules:
            lacking = [name for attr, name, _ in _BUCKETS if not getattr(rule.examples, attr)]
            if lacking:
                line, col = policy.rule_position(rule.id)
                where = f"{policy.source}:{line}:{col}" if line else policy.source
                problems.append(f"{where}: rule {rule.id}: examples.{' and examples.'.join(lacking)} missing")
    return problems


def run_test(specs: Sequence[str], out: TextIO | None = None) -> int:
    """Run every rule's examples; 0 when all give their expected status, 2 otherwise."""
    out = out or sys.stdout
    policies = _load_all(specs)
    if policies is None:
        return ExitCode.USAGE
    problems = missing_examples(policies)
    for problem in problems:
        log.error("refused: %s", problem)
    if problems:
        return ExitCode.USAGE
    outcomes = run_examples(policies)
    wrong = [o for o in outcomes if not o.ok]
    for o in wrong:
        log.error(
            "FAIL %s examples.%s[%d] (%s): expected %s, got %s: %s",
            o.rule_id,
            o.bucket,
            o.index,
            o.policy,
            o.expected.value,
            o.actual.value,
            o.message,
        )
    rules = len({(o.policy, o.rule_id) for o in outcomes})
    out.write(f"{len(outcomes) - len(wrong)}/{len(outcomes)} examples as expected in {rules} rules\n")
    fixes = check_fixes(policies)  # each fix must make its rule's fail examples stop failing
    unfixed = [f for f in fixes if not f.ok]
    for f in unfixed:
        log.error(
            "FAIL %s fix on examples.fail[%d] (%s): still %s: %s", f.rule_id, f.index, f.policy, f.status, f.message
        )
    if fixes:
        simulated = [f for f in fixes if f.status is not None]
        out.write(f"{len(simulated) - len(unfixed)}/{len(simulated)} fail examples fixed by their rule's fix\n")
    return ExitCode.USAGE if wrong or unfixed else ExitCode.OK
