"""Compile policies once, at load: every check and scope node becomes a closure (docs/policies.md).

Evaluation (rules/evaluate.py) then never re-parses anything; the compiled structures also hold
the per-rule and per-set memo of decisions, because an estate repeats the same few values.
"""

from __future__ import annotations

import fnmatch
import hashlib
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, assert_never

from rules.facts import UNKNOWN, Facts, Sentinel
from rules.models import (
    TAG_PREFIX,
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    Equals,
    Exists,
    FamilyMatch,
    In,
    Kind,
    LessThan,
    Matches,
    NoneOf,
    NotEquals,
    NotIn,
    Ordering,
    Policy,
    PolicyError,
    Rule,
    Scope,
    StringMatch,
    VersionRange,
)
from scanner.core.models import parse_version
from scanner.core.results import NAMESPACE, Status
from scanner.core.semantics import OsFamily

Pred = Callable[[Facts], bool | None]  # None: unknown (Kleene logic), never a pass
MEMO_MAX = 4096
# Facts a failure message shows besides the ones the check reads (rules/evaluate.py, _check and
# _context): part of every memo key, so a memoised decision never carries another host's evidence.
CONTEXT_FACTS = ("os.family", "os.version", "effective_mode", "integrity", "raw_type", "raw_value")


@dataclass(frozen=True)
class Decision:
    """How one rule came out for one host, before it becomes a RuleResult (what the memos hold)."""

    status: Status
    message: str
    scope_out: tuple[str, ...] = ()  # names of scope terms that did not select the host
    overridden_by: str | None = None


# ---------------------------------------------------------------------------------------------
# Check nodes


def getter(name: str) -> Callable[[Facts], Any]:
    """Return a function reading one fact (a `tags.<name>` fact reads the host's tag)."""
    if name.startswith(TAG_PREFIX):
        tag = name[len(TAG_PREFIX) :]
        return lambda f: f["tags"].get(tag)
    return lambda f: f[name]


def _key(value: Any) -> tuple[type, Any]:
    # Type-aware identity: 2 (int), True (bool) and "2" (str) are three different values.
    return (type(value), value)


@lru_cache(maxsize=4096)
def cached_version(text: str) -> tuple[int, ...] | None:
    """Return parse_version(text), memoised: an estate reports a handful of distinct versions."""
    return parse_version(text)


def _ordering(node: Ordering) -> Callable[[Any], bool]:
    less = isinstance(node, LessThan)
    operand = node.operand
    if node.kind is Kind.VERSION:
        bound = parse_version(operand)

        def vcmp(x: Any) -> bool:
            v = cached_version(x) if type(x) is str else None
            if v is None or bound is None:
                return False  # unparseable version: never "in range"
            return v < bound if less else v > bound

        return vcmp
    # A string, a bool, null or a list is never less or greater than an int (not an exception).
    if less:
        return lambda x: type(x) is int and x < operand
    return lambda x: type(x) is int and x > operand


def _base(node: Comparison) -> Callable[[Any], bool]:
    """Compile the positive form of one comparison to a test on a known fact value."""
    if isinstance(node, Equals | NotEquals):
        want = _key(node.operand)
        # Type-aware: a list (REG_MULTI_SZ) never equals a scalar; 2, True and "2" differ.
        return lambda x: not isinstance(x, tuple | list | dict) and (type(x), x) == want
    if isinstance(node, In | NotIn):
        allowed = frozenset(_key(v) for v in node.operand)
        return lambda x: not isinstance(x, tuple | list | dict) and (type(x), x) in allowed
    if isinstance(node, Ordering):
        return _ordering(node)
    if isinstance(node, Exists):
        want_exists = node.exists
        return lambda x: (x is not None and not (isinstance(x, tuple | list) and not x)) is want_exists
    if isinstance(node, Matches):
        search = re.compile(node.matches).search
        return lambda x: type(x) is str and search(x) is not None
    raise PolicyError(f"unknown operator {node.operator!r}")  # pragma: no cover - every operator is above


def _compare(node: Comparison) -> Pred:
    """Compile one comparison: True, False, or None when the fact is unknown (fail closed)."""
    get, test = getter(node.fact), _base(node)
    if isinstance(node, NotEquals | NotIn):

        def negated(f: Facts) -> bool | None:
            x = get(f)
            return None if x.__class__ is Sentinel else not test(x)

        return negated

    def positive(f: Facts) -> bool | None:
        x = get(f)
        return None if x.__class__ is Sentinel else test(x)

    return positive


def _all(fns: tuple[Pred, ...]) -> Pred:
    def fn(f: Facts) -> bool | None:
        result: bool | None = True
        for g in fns:
            v = g(f)
            if v is False:
                return False
            if v is None:
                result = None
        return result

    return fn


def _any(fns: tuple[Pred, ...]) -> Pred:
    def fn(f: Facts) -> bool | None:
        result: bool | None = False
        for g in fns:
            v = g(f)
            if v is True:
                return True
            if v is None:
                result = None
        return result

    return fn


def _none(fns: tuple[Pred, ...]) -> Pred:
    inner = _any(fns)

    def fn(f: Facts) -> bool | None:
        v = inner(f)
        return None if v is None else not v

    return fn


@dataclass(frozen=True)
class Node:
    """A compiled check node: its closure, its children (for tracing) and the facts it reads."""

    condition: Condition
    fn: Pred
    children: tuple[Node, ...]
    reads: tuple[str, ...]


def compile_condition(node: Condition) -> Node:
    """Compile a check tree into closures, once, at load. Three-valued (Kleene): None is unknown."""
    if isinstance(node, Comparison):
        return Node(node, _compare(node), (), (node.fact,))
    if isinstance(node, AllOf | AnyOf | NoneOf):
        make = _all if isinstance(node, AllOf) else _any if isinstance(node, AnyOf) else _none
        kids = tuple(compile_condition(c) for c in node.children)
        reads = tuple(dict.fromkeys(r for k in kids for r in k.reads))
        return Node(node, make(tuple(k.fn for k in kids)), kids, reads)
    assert_never(node)


# ---------------------------------------------------------------------------------------------
# Scope selectors


def string_match(m: StringMatch) -> Callable[[str | None], bool]:
    """Compile a string selector (equals, in, not_in, glob, exists) to a test on a value."""
    if m.equals is not None:
        want = m.equals
        return lambda v: v == want
    if m.in_ is not None:
        options = frozenset(m.in_)
        return lambda v: v in options
    if m.not_in is not None:
        excluded = frozenset(m.not_in)
        return lambda v: v not in excluded
    if m.glob is not None:
        rx = re.compile(fnmatch.translate(m.glob))  # case-sensitive, like the tag values themselves
        return lambda v: v is not None and rx.match(v) is not None
    want_exists = bool(m.exists)
    return lambda v: (v is not None) is want_exists


def _family_match(m: FamilyMatch) -> Callable[[str | None], bool]:
    if m.in_ is not None:
        options = frozenset(f.value for f in m.in_)
        return lambda v: v == OsFamily.UNKNOWN.value or v in options  # unknown OS: in scope (fail closed)
    excluded = frozenset(f.value for f in m.not_in or ())
    return lambda v: v == OsFamily.UNKNOWN.value or v not in excluded


def _version_match(r: VersionRange) -> Callable[[str | None], bool]:
    lo = parse_version(r.at_least) if r.at_least else None
    hi = parse_version(r.below) if r.below else None

    def inside(v: str | None) -> bool:
        parsed = cached_version(v) if v is not None else None
        if parsed is None:
            return True  # unparseable version: in scope (fail closed), the check then fails on unknown facts
        return (lo is None or parsed >= lo) and (hi is None or parsed < hi)

    return inside


ScopeTerm = tuple[str, Callable[[Facts], bool]]


def _tag_term(tag: str, fn: Callable[[str | None], bool]) -> Callable[[Facts], bool]:
    return lambda f: fn(f["tags"].get(tag))


def compile_scope(scope: Scope) -> tuple[ScopeTerm, ...]:
    """Compile a scope into named predicates; the host is in scope when all hold."""
    terms: list[ScopeTerm] = []
    for tag, match in sorted(scope.tags.items()):
        terms.append((f"tags.{tag}", _tag_term(tag, string_match(match))))
    if scope.group is not None:
        gfn = string_match(scope.group)
        terms.append(("group", lambda f: gfn(f["group"])))
    if scope.os_family is not None:
        ffn = _family_match(scope.os_family)
        terms.append(("os_family", lambda f: ffn(f["os.family"])))
    if scope.os_version is not None:
        vfn = _version_match(scope.os_version)
        terms.append(("os_version", lambda f: vfn(f["os.version"])))
    return tuple(terms)


# ---------------------------------------------------------------------------------------------
# Rules and policy sets


@dataclass(frozen=True)
class CompiledRule:
    """A rule ready to evaluate: closures for scope and check, and the facts the check reads."""

    rule: Rule
    policy: str
    scope: tuple[ScopeTerm, ...]
    check: Node
    reads: tuple[str, ...]
    getters: tuple[Callable[[Facts], Any], ...]
    uid_prefix: Any  # hashlib SHA-1 state after NAMESPACE bytes + "RULE-ID|"
    # Decisions depend only on the values they read, and estates repeat the same few values: memoise.
    memo: dict[Any, Decision] = field(default_factory=dict, compare=False)

    in_scope: Callable[[Facts], bool] = field(default=lambda f: True, compare=False)
    origin: Policy | None = field(default=None, compare=False)
    memo_key: Callable[[Facts], Any] = field(default=lambda f: None, compare=False)
    reads_address_private: bool = False


def compile_rule(rule: Rule, policy: str = "", origin: Policy | None = None) -> CompiledRule:
    """Compile one rule."""
    check = compile_condition(rule.check)
    prefix = hashlib.sha1(NAMESPACE.bytes + f"{rule.id}|".encode(), usedforsecurity=False)
    getters = tuple(getter(name) for name in check.reads)
    scope = compile_scope(rule.scope)
    fns = tuple(fn for _, fn in scope)
    in_scope = fns[0] if len(fns) == 1 else (lambda f: all(fn(f) for fn in fns))
    plain = [n for n in check.reads if not n.startswith(TAG_PREFIX)] + list(CONTEXT_FACTS)
    tags = tuple(n[len(TAG_PREFIX) :] for n in check.reads if n.startswith(TAG_PREFIX))
    plain_key = operator.itemgetter(*plain)
    memo_key = plain_key if not tags else (lambda f: (plain_key(f), *(f["tags"].get(t) for t in tags)))
    return CompiledRule(
        rule,
        policy,
        scope,
        check,
        check.reads,
        getters,
        prefix,
        in_scope=in_scope,
        origin=origin,
        memo_key=memo_key,
        reads_address_private="address_private" in check.reads,
    )


@dataclass(frozen=True)
class RuleSet:
    """Every rule of a policy set, compiled, in evaluation order (overriders first)."""

    policies: tuple[Policy, ...]
    rules: tuple[CompiledRule, ...]  # sorted by id: the order of results
    order: tuple[int, ...]  # indexes into `rules`, topologically: a rule before those it overrides
    overridden_by: tuple[tuple[int, ...], ...]  # for each rule, the indexes of rules overriding it
    # Every fact any scope, check or message of the set can depend on: hosts with equal signatures
    # get equal decisions, so a nightly estate of thousands of look-alike hosts is decided once per kind.
    signature: Callable[[Facts], Any] = field(default=lambda f: None, compare=False)
    memo: dict[Any, list[Decision]] = field(default_factory=dict, compare=False)


def _signature(rules: Sequence[CompiledRule]) -> Callable[[Facts], Any]:
    plain: set[str] = {"os.family", "address_private", *CONTEXT_FACTS}
    tags: set[str] = set()
    for c in rules:
        for name in c.reads:
            (tags.add(name[len(TAG_PREFIX) :]) if name.startswith(TAG_PREFIX) else plain.add(name))
        for term, _ in c.scope:
            if term.startswith(TAG_PREFIX):
                tags.add(term[len(TAG_PREFIX) :])
            else:
                plain.add({"os_family": "os.family", "os_version": "os.version"}.get(term, term))
    get_plain = operator.itemgetter(*sorted(plain))
    tag_names = tuple(sorted(tags))
    reads_address = any(c.reads_address_private for c in rules)

    def signature(f: Facts) -> Any:
        tag_map = f["tags"]
        # The address itself only matters in the message of a rule whose privacy fact is unknown.
        address = f["address"] if reads_address and f["address_private"] is UNKNOWN else None
        return (get_plain(f), tuple(tag_map.get(t) for t in tag_names), address)

    return signature


def _error(c: CompiledRule, message: str) -> PolicyError:
    policy = c.origin
    if policy is None:
        return PolicyError(message)
    line, col = policy.rule_position(c.rule.id)
    return PolicyError(message, policy.source, line, col)


def compile_policies(policies: Sequence[Policy]) -> RuleSet:
    """Compile a policy set; refuse duplicate rule ids, unresolved overrides and override cycles."""
    seen: dict[str, str] = {}
    compiled: list[CompiledRule] = []
    for policy in policies:
        for rule in policy.rules:
            if rule.id in seen:
                line, col = policy.rule_position(rule.id)
                message = f"rules.id: duplicate rule id {rule.id!r} (also in {seen[rule.id]})"
                raise PolicyError(message, policy.source, line, col)
            seen[rule.id] = policy.source
            compiled.append(compile_rule(rule, policy.name, policy))
    compiled.sort(key=lambda c: c.rule.id)
    index = {c.rule.id: i for i, c in enumerate(compiled)}
    overridden_by: list[list[int]] = [[] for _ in compiled]
    for i, c in enumerate(compiled):
        for target in c.rule.overrides:
            if target not in index:
                raise _error(
                    c, f"rules.overrides: {c.rule.id} overrides {target!r}, which no loaded policy defines"
                )
            overridden_by[index[target]].append(i)
    # Kahn's algorithm: a rule is decided after every rule that may override it.
    pending = [len(x) for x in overridden_by]
    ready = [i for i, n in enumerate(pending) if n == 0]
    order: list[int] = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for target in compiled[i].rule.overrides:
            t = index[target]
            pending[t] -= 1
            if pending[t] == 0:
                ready.append(t)
    if len(order) != len(compiled):
        stuck = sorted((compiled[i] for i, n in enumerate(pending) if n > 0), key=lambda c: c.rule.id)
        cycle = ", ".join(c.rule.id for c in stuck)
        raise _error(stuck[0], f"rules.overrides: override cycle among rules {cycle}")
    return RuleSet(
        tuple(policies),
        tuple(compiled),
        tuple(order),
        tuple(tuple(x) for x in overridden_by),
        signature=_signature(compiled),
    )


_CACHE: dict[tuple[int, ...], RuleSet] = {}


def ruleset(policies: Sequence[Policy]) -> RuleSet:
    """Return the compiled set for these policy objects, compiling once per distinct set."""
    key = tuple(id(p) for p in policies)
    hit = _CACHE.get(key)
    if hit is not None and all(a is b for a, b in zip(hit.policies, policies, strict=True)):
        return hit
    compiled = compile_policies(policies)
    if len(_CACHE) >= 16:
        _CACHE.clear()
    _CACHE[key] = compiled  # the RuleSet holds the policies, so their ids cannot be reused meanwhile
    return compiled
