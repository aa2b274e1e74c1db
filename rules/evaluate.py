"""Evaluate policies against one host: pure, deterministic, over precompiled rules (docs/policies.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rules.compile import MEMO_MAX, CompiledRule, Decision, RuleSet, ruleset
from rules.facts import NOT_APPLICABLE, UNKNOWN, Facts, extract_facts
from rules.models import TAG_PREFIX, Policy
from scanner.core.models import Observation
from scanner.core.results import RuleResult, Status, host_identity
from scanner.core.semantics import OsFamily, Setting, StrayValue, assess

MAX_SHOWN = 80  # characters of one host-supplied value in a message; the report holds the full data


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


def read_fact(facts: Facts, name: str) -> Any:
    """Return one fact's value (a `tags.<name>` fact reads the host's tag)."""
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


def decide_memoised(rs: RuleSet, facts: Facts) -> list[Decision]:
    """Return `decide(rs, facts)`, memoised on the set's facts signature."""
    try:
        key = rs.signature(facts)
        hit = rs.memo.get(key)
    except TypeError:  # an unhashable value (a stray REG_MULTI_SZ): decide directly
        return decide(rs, facts)
    if hit is None:
        hit = decide(rs, facts)
        if len(rs.memo) >= MEMO_MAX:
            rs.memo.clear()
        rs.memo[key] = hit
    return hit


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
            text = shown[name] = f"{name}={show(read_fact(facts, name))}"
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
    # The raw evidence a reader needs next to a failure, raw and effective (docs/domain.md#invalid-data);
    # every name here must be in CONTEXT_FACTS, part of the memo keys.
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
    return [_result(c, d, host) for c, d in zip(rs.rules, decide_memoised(rs, facts), strict=True)]


def evaluate_facts(facts: Facts, policies: Sequence[Policy], host: str = "example") -> list[RuleResult]:
    """Evaluate already-extracted facts (examples use this after building a real Observation)."""
    rs = ruleset(policies)
    identity = _identity(host)
    return [_result(c, d, identity) for c, d in zip(rs.rules, decide(rs, facts), strict=True)]
