"""Evaluate policies against one host: pure, deterministic, precompiled (docs/policies.md)."""

from __future__ import annotations

import fnmatch
import hashlib
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydantic import Field

from rules.facts import NOT_APPLICABLE, UNKNOWN, Facts, Sentinel, extract_facts
from rules.models import (
    TAG_PREFIX,
    Condition,
    FamilyMatch,
    Kind,
    Policy,
    PolicyError,
    Rule,
    Scope,
    StringMatch,
    VersionRange,
    fact_kind,
    version_tuple,
)
from scanner.core.models import Frozen, Observation
from scanner.core.results import NAMESPACE, RuleResult, Severity, Status, host_identity
from scanner.core.semantics import OsFamily, Setting, StrayValue, assess

Pred = Callable[[Facts], bool | None]  # None: unknown (Kleene logic), never a pass
MAX_SHOWN = 80  # characters of one host-supplied value in a message; the report holds the full data


# ---------------------------------------------------------------------------------------------
# Compilation: every policy node becomes a closure once; evaluation never re-parses anything.


def _getter(name: str) -> Callable[[Facts], Any]:
    if name.startswith(TAG_PREFIX):
        tag = name[len(TAG_PREFIX) :]
        return lambda f: f["tags"].get(tag)
    return lambda f: f[name]


def _key(value: Any) -> tuple[type, Any]:
    # Type-aware identity: 2 (int), True (bool) and "2" (str) are three different values.
    return (type(value), value)


def _base(node: Condition) -> Callable[[Any], bool]:
    """Compile the positive form of one comparison to a test on a known fact value."""
    # Both guaranteed by Condition validation at load.
    assert node.fact is not None
    assert node.operator is not None
    op, operand = node.operator, node.operand
    if op in ("equals", "not_equals"):
        want = _key(operand)
        # Type-aware: a list (REG_MULTI_SZ) never equals a scalar; 2, True and "2" differ.
        return lambda x: not isinstance(x, tuple | list | dict) and (type(x), x) == want
    if op in ("in", "not_in"):
        allowed = frozenset(_key(v) for v in operand)
        return lambda x: not isinstance(x, tuple | list | dict) and (type(x), x) in allowed
    if op in ("less_than", "greater_than"):
        less = op == "less_than"
        if fact_kind(node.fact) is Kind.VERSION:
            bound = version_tuple(operand)

            def vcmp(x: Any) -> bool:
                v = _version(x) if type(x) is str else None
                if v is None or bound is None:
                    return False  # unparseable version: never "in range"
                return v < bound if less else v > bound

            return vcmp
        # A string, a bool, null or a list is never less or greater than an int (not an exception).
        if less:
            return lambda x: type(x) is int and x < operand
        return lambda x: type(x) is int and x > operand
    if op == "exists":
        want_exists = bool(operand)
        return lambda x: (x is not None and not (isinstance(x, tuple | list) and not x)) is want_exists
    if op == "matches":
        search = re.compile(operand).search
        return lambda x: type(x) is str and search(x) is not None
    raise PolicyError(f"unknown operator {op!r}")  # pragma: no cover - refused at load


def _compare(node: Condition) -> Pred:
    """Compile one comparison: True, False, or None when the fact is unknown (fail closed)."""
    assert node.fact is not None
    get, test = _getter(node.fact), _base(node)
    if node.operator in ("not_equals", "not_in"):

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


@lru_cache(maxsize=4096)
def _version(text: str) -> tuple[int, ...] | None:
    return version_tuple(text)


@dataclass(frozen=True)
class Node:
    """A compiled check node: its closure, its children (for tracing) and the facts it reads."""

    condition: Condition
    fn: Pred
    children: tuple[Node, ...]
    reads: tuple[str, ...]


def compile_condition(node: Condition) -> Node:
    """Compile a check tree into closures, once, at load. Three-valued (Kleene): None is unknown."""
    for combo, make in (("all", _all), ("any", _any), ("none", _none)):
        items = getattr(node, combo)
        if items is not None:
            kids = tuple(compile_condition(c) for c in items)
            reads = tuple(dict.fromkeys(r for k in kids for r in k.reads))
            return Node(node, make(tuple(k.fn for k in kids)), kids, reads)
    assert node.fact is not None
    return Node(node, _compare(node), (), (node.fact,))


def string_match(m: StringMatch) -> Callable[[str | None], bool]:
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
    lo = version_tuple(r.at_least) if r.at_least else None
    hi = version_tuple(r.below) if r.below else None

    def inside(v: str | None) -> bool:
        parsed = _version(v) if v is not None else None
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
    getters = tuple(_getter(name) for name in check.reads)
    scope = compile_scope(rule.scope)
    fns = tuple(fn for _, fn in scope)
    in_scope = fns[0] if len(fns) == 1 else (lambda f: all(fn(f) for fn in fns))
    plain = [n for n in check.reads if not n.startswith(TAG_PREFIX)] + list(_CONTEXT_KEY)
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

    def decide(self, facts: Facts) -> list[Decision]:
        """Return `decide(self, facts)`, memoised on the facts signature."""
        try:
            key = self.signature(facts)
            hit = self.memo.get(key)
        except TypeError:  # an unhashable value (a stray REG_MULTI_SZ): decide directly
            return decide(self, facts)
        if hit is None:
            hit = decide(self, facts)
            if len(self.memo) >= MEMO_MAX:
                self.memo.clear()
            self.memo[key] = hit
        return hit


def _signature(rules: Sequence[CompiledRule]) -> Callable[[Facts], Any]:
    plain: set[str] = {"os.family", "address_private", *_CONTEXT_KEY}
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


# ---------------------------------------------------------------------------------------------
# Evaluation


def show(value: Any) -> str:
    """Render a fact value for a message: repr (control characters escaped), truncated."""
    if value is UNKNOWN or value is NOT_APPLICABLE:
        return repr(value)
    if isinstance(value, tuple) and value and isinstance(value[0], StrayValue):
        text = "[" + ", ".join(_stray(s) for s in value) + "]"
    elif isinstance(value, tuple):
        text = repr(list(value))
    else:
        text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _stray(s: StrayValue) -> str:
    return f"{s.key.rsplit(chr(92), 1)[-1]}:{s.type}={s.data!r}"


_NA_WHY = {
    OsFamily.WIN2000.value: "the setting does not exist on Windows 2000 (KB 885407)",
    OsFamily.XP_PRE_SP2.value: "the value has no effect before Windows XP SP2 (KB 885407)",
}


@dataclass(frozen=True)
class Decision:
    """How one rule came out for one host, before it becomes a RuleResult."""

    status: Status
    message: str
    scope_out: tuple[str, ...] = ()  # names of scope terms that did not select the host
    overridden_by: str | None = None


def _read_fact(facts: Facts, name: str) -> Any:
    return facts["tags"].get(name[len(TAG_PREFIX) :]) if name.startswith(TAG_PREFIX) else facts[name]


def decide(rs: RuleSet, facts: Facts) -> list[Decision]:
    """Decide every rule of a set for one read host's facts, in `rs.rules` order."""
    n = len(rs.rules)
    decisions: list[Decision] = [_PENDING] * n
    active = [False] * n  # in scope and not superseded: such a rule supersedes what it overrides
    shown: dict[str, str] = {}  # per-host cache of rendered fact values
    rules, overridden_by = rs.rules, rs.overridden_by
    for i in rs.order:
        c = rules[i]
        if c.scope and not c.in_scope(facts):
            out = tuple(name for name, fn in c.scope if not fn(facts))
            d = c.memo.get(("scope", out))
            if d is None:
                d = c.memo[("scope", out)] = Decision(
                    Status.NOT_APPLICABLE, f"outside the rule's scope ({', '.join(out)})", out
                )
            decisions[i] = d
            continue
        by = (
            next((rules[j].rule.id for j in overridden_by[i] if active[j]), None)
            if overridden_by[i]
            else None
        )
        if by is not None:
            d = c.memo.get(("by", by))
            if d is None:
                d = c.memo[("by", by)] = Decision(
                    Status.NOT_APPLICABLE, f"superseded by {by} (overrides)", (), by
                )
            decisions[i] = d
            continue
        active[i] = True
        decisions[i] = _memo_check(c, facts, shown)
    return decisions


_CONTEXT_KEY = ("os.family", "os.version", "effective_mode", "integrity", "raw_type", "raw_value")
MEMO_MAX = 4096


def _memo_check(c: CompiledRule, facts: Facts, shown: dict[str, str]) -> Decision:
    # The key holds every fact the decision and its message can depend on (reads + failure context).
    key: Any = c.memo_key(facts)
    if c.reads_address_private and facts["address_private"] is UNKNOWN:
        key = (*key, facts["address"])
    try:
        hit = c.memo.get(key)
    except TypeError:  # a list value (REG_MULTI_SZ data, stray values): not hashable, decide directly
        return _check(c, facts, shown)
    if hit is None:
        hit = _check(c, facts, shown)
        if len(c.memo) >= MEMO_MAX:
            c.memo.clear()
        c.memo[key] = hit
    return hit


_PENDING = Decision(Status.ERROR, "internal: not decided")


def _evidence(facts: Facts, names: Sequence[str], shown: dict[str, str]) -> str:
    parts = []
    for name in names:
        text = shown.get(name)
        if text is None:
            text = shown[name] = f"{name}={show(_read_fact(facts, name))}"
        parts.append(text)
    return ", ".join(parts)


def _check(c: CompiledRule, facts: Facts, shown: dict[str, str]) -> Decision:
    values = [get(facts) for get in c.getters]
    if any(v is NOT_APPLICABLE for v in values):
        why = _NA_WHY.get(facts.get("os.family") or "", "the setting does not apply to this OS")
        return Decision(Status.NOT_APPLICABLE, why)
    outcome = c.check.fn(facts)
    if outcome is True:
        # Kleene logic: True even with unknown facts means true whatever their real values are.
        return Decision(Status.PASS, _evidence(facts, c.reads, shown))
    context = [n for n in _context(facts) if facts[n] is not NOT_APPLICABLE]
    if outcome is None:
        unknown = [name for name, v in zip(c.reads, values, strict=True) if v is UNKNOWN]
        reasons: dict[str, list[str]] = {}
        for name in unknown:
            reasons.setdefault(_unknown_reason(name, facts), []).append(name)
        why = "; ".join(f"{', '.join(names)} unknown because {reason}" for reason, names in reasons.items())
        if "address_private" in unknown:
            context.append("address")
        return Decision(Status.FAIL, f"fail closed: {why}; " + _evidence(facts, context, shown))
    names = list(dict.fromkeys([*c.reads, *context]))
    return Decision(Status.FAIL, _evidence(facts, names, shown))


def _unknown_reason(name: str, facts: Facts) -> str:
    if name == "address_private":
        return "the address is a name, not an IP literal (names are never resolved)"
    if facts.get("os.family") == OsFamily.UNKNOWN.value:
        return "the OS version cannot be parsed, so the applicable key is unknown"
    if facts.get("integrity") == "invalid_value":
        return "the stored REG_DWORD is outside the documented 0..2"
    return "the stored data is invalid"


def _context(facts: Facts) -> list[str]:
    # The raw evidence a reader needs next to a failure (docs/domain.md#invalid-data: raw and effective).
    names = ["effective_mode", "integrity", "raw_type", "raw_value"]
    if facts.get("os.family") == OsFamily.UNKNOWN.value:
        names.append("os.version")
    return names


def _uid(prefix: Any, identity: bytes) -> str:
    # finding_uid() inlined (UUIDv5 = SHA-1 of namespace + name, RFC 4122 section 4.3) with the
    # "namespace + rule id|" prefix hashed once per rule; tests pin it equal to finding_uid().
    h = prefix.copy()
    h.update(identity)
    x = h.hexdigest()
    variant = "89ab"[int(x[16], 16) & 3]  # RFC 4122 variant bits 10xx
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{variant}{x[17:20]}-{x[20:32]}"


_VALIDATE = RuleResult.__pydantic_validator__.validate_python  # RuleResult(**kw) minus a wrapper call


def _result(c: CompiledRule, d: Decision, identity: bytes) -> RuleResult:
    result: RuleResult = _VALIDATE(
        {
            "rule_id": c.rule.id,
            "title": c.rule.title,
            "severity": c.rule.severity,
            "status": d.status,
            "message": d.message,
            "finding_id": _uid(c.uid_prefix, identity),
        }
    )
    return result


def _identity(host: str) -> bytes:
    return host_identity(host).encode("utf-8")


def _error_message(observation: Observation) -> str:
    err = observation.error
    if err is None:
        return "no OS facts were read, so nothing can be evaluated"
    text = err.message if len(err.message) <= 200 else err.message[:197] + "..."
    return f"host could not be read ({err.stage.value}/{err.reason}): {text}"


def evaluate(
    observation: Observation, policies: Sequence[Policy], *, setting: Setting | None = None
) -> list[RuleResult]:
    """Evaluate every rule for one host; results sorted by rule id. Pure: no I/O."""
    rs = ruleset(policies)
    host = _identity(observation.target.name)
    if setting is None:
        setting = assess(observation)
    if observation.error is not None or setting is None:
        # Could not read is a coverage problem, never a pass (docs/domain.md#unread-hosts).
        message = _error_message(observation)
        return [_result(c, Decision(Status.ERROR, message), host) for c in rs.rules]
    facts = extract_facts(observation, setting)
    return [_result(c, d, host) for c, d in zip(rs.rules, rs.decide(facts), strict=True)]


def evaluate_facts(facts: Facts, policies: Sequence[Policy], host: str = "example") -> list[RuleResult]:
    """Evaluate already-extracted facts (examples use this after building a real Observation)."""
    rs = ruleset(policies)
    identity = _identity(host)
    return [_result(c, d, identity) for c, d in zip(rs.rules, decide(rs, facts), strict=True)]


# ---------------------------------------------------------------------------------------------
# Explain: the same decisions, with every step shown.


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
    if node.children:
        kind = next(k for k in ("all", "any", "none") if getattr(cond, k) is not None)
        return NodeTrace(kind=kind, result=node.fn(facts), children=[_trace(k, facts) for k in node.children])
    assert cond.fact is not None
    return NodeTrace(
        kind="compare",
        fact=cond.fact,
        operator=cond.operator,
        operand=cond.operand,
        value=jsonable(_read_fact(facts, cond.fact)),
        result=node.fn(facts),
    )


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
                facts={name: jsonable(_read_fact(facts, name)) for name in c.reads},
                scope=ScopeTrace(in_scope=all(terms.values()), terms=terms),
                overridden_by=d.overridden_by,
                check=_trace(c.check, facts) if ran else None,
                result=r,
            )
        )
    return traces
