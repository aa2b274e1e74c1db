"""Explain: the same decisions as rules/evaluate.py, with every step shown (`natt-audit explain`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, assert_never

from pydantic import Field

from rules.compile import Node, ruleset
from rules.evaluate import decide, evaluate, read_fact
from rules.facts import NOT_APPLICABLE, UNKNOWN, Facts, extract_facts
from rules.models import Combinator, Comparison, Policy
from scanner.core.models import Frozen, Observation
from scanner.core.results import RuleResult, Severity
from scanner.core.semantics import Setting, StrayValue, assess


def jsonable(value: Any) -> Any:
    """Return a fact value as plain JSON data (sentinels become their names)."""
    if value is UNKNOWN or value is NOT_APPLICABLE:
        return repr(value)
    if isinstance(value, StrayValue):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


class NodeTrace(Frozen):
    """One check node: what it compared, the fact value it saw, and its truth value."""

    kind: str  # "all", "any", "none" or "compare"
    fact: str | None = None
    operator: str | None = None
    operand: Any = None
    value: Any = None
    result: bool | None  # None: unknown (a fact it reads is unknown)
    children: list[NodeTrace] = Field(default_factory=list)


class ScopeTrace(Frozen):
    """Each scope term and whether it selected the host."""

    in_scope: bool
    terms: dict[str, bool]


class RuleTrace(Frozen):
    """How one result was derived."""

    rule_id: str
    policy: str
    severity: Severity
    facts: dict[str, Any]  # the facts the check reads, as JSON values
    scope: ScopeTrace
    overridden_by: str | None
    check: NodeTrace | None  # None when the check was not run (error, out of scope, superseded)
    result: RuleResult


def _trace(node: Node, facts: Facts) -> NodeTrace:
    cond = node.condition
    if isinstance(cond, Combinator):
        children = [_trace(k, facts) for k in node.children]
        return NodeTrace(kind=cond.COMBINATOR, result=node.fn(facts), children=children)
    if isinstance(cond, Comparison):
        return NodeTrace(
            kind="compare",
            fact=cond.fact,
            operator=cond.operator,
            operand=cond.operand,
            value=jsonable(read_fact(facts, cond.fact)),
            result=node.fn(facts),
        )
    assert_never(cond)


def explain(
    observation: Observation, policies: Sequence[Policy], *, setting: Setting | None = None
) -> list[RuleTrace]:
    """Return, per rule, the facts read, the scope decision, each check node's value and the result."""
    rs = ruleset(policies)
    results = evaluate(observation, policies, setting=setting)
    if setting is None:
        setting = assess(observation)
    if observation.error is not None or setting is None:
        return [
            RuleTrace(
                rule_id=c.rule.id,
                policy=c.policy,
                severity=c.rule.severity,
                facts={},
                scope=ScopeTrace(in_scope=False, terms={}),
                overridden_by=None,
                check=None,
                result=r,
            )
            for c, r in zip(rs.rules, results, strict=True)
        ]
    facts = extract_facts(observation, setting)
    decisions = decide(rs, facts)
    traces = []
    for c, d, r in zip(rs.rules, decisions, results, strict=True):
        terms = {name: fn(facts) for name, fn in c.scope}
        ran = all(terms.values()) and d.overridden_by is None
        traces.append(
            RuleTrace(
                rule_id=c.rule.id,
                policy=c.policy,
                severity=c.rule.severity,
                facts={name: jsonable(read_fact(facts, name)) for name in c.reads},
                scope=ScopeTrace(in_scope=all(terms.values()), terms=terms),
                overridden_by=d.overridden_by,
                check=_trace(c.check, facts) if ran else None,
                result=r,
            )
        )
    return traces
