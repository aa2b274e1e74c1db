"""Check that a rule's fix fixes it: apply it to the rule's fail examples and evaluate again. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rules.evaluate import evaluate_facts
from rules.facts import example_observation, extract_facts
from rules.models import TAG_PREFIX, Policy
from rules.remediation import Fix
from scanner.core.models import VALUE_NAME, KeyRead, Observation, RegistryValue
from scanner.core.results import Status
from scanner.core.semantics import assess

# Example facts an Observation carries, so a fixed example is re-derived from what was changed.
# An example that states any other fact outright (effective_mode: unknown, name_canonical, ...)
# describes a host no registry change can be simulated on, and is not checked.
_OBSERVED: Final = frozenset(
    {
        "raw_type",
        "raw_value",
        "value_name",
        "present",
        "key_present",
        "stray",
        "os.version",
        "os.build",
        "os.service_pack",
        "os.family",
        "group",
        "address",
        "tags",
    }
)


def fixed_observation(observation: Observation, fix: Fix) -> Observation | None:
    """Return what the host would read after the fix; None where no key applies (nothing is written)."""
    setting = assess(observation)
    if setting is None or setting.applicable_key is None:
        return None
    applicable = setting.applicable_key.lower()
    reads = list(observation.keys)
    if not any(read.key.lower() == applicable for read in reads):
        reads.append(KeyRead(key=setting.applicable_key, key_present=False))
    keys: list[KeyRead] = []
    for read in reads:
        here = read.key.lower() == applicable
        if here and fix.set_value is not None:
            # Writing an existing value keeps its stored spelling (names match case-insensitively).
            name = read.value.name if read.value is not None else VALUE_NAME
            value = RegistryValue(name=name, type=fix.set_value.type, data=fix.set_value.data)
            keys.append(read.model_copy(update={"key_present": True, "value": value}))
        elif not here and fix.delete_strays and read.value is not None:
            keys.append(read.model_copy(update={"value": None}))
        else:
            keys.append(read)
    return observation.model_copy(update={"keys": tuple(keys)})


@dataclass(frozen=True)
class FixOutcome:
    """One fail example of a rule with a fix: the status the rule gives once the fix is applied."""

    policy: str
    rule_id: str
    index: int  # position in examples.fail
    status: Status | None  # None: not simulated (no key applies, or the example states derived facts)
    message: str

    @property
    def ok(self) -> bool:
        """Return whether the fix left the rule not failing (or could not be simulated)."""
        return self.status is not Status.FAIL


def _simulable(example: Mapping[str, Any]) -> bool:
    return all(name in _OBSERVED or name.startswith(TAG_PREFIX) for name in example)


def check_fixes(policies: Sequence[Policy]) -> list[FixOutcome]:
    """Apply each rule's fix to each of its fail examples and evaluate the whole set again."""
    outcomes: list[FixOutcome] = []
    for policy in policies:
        for rule in policy.rules:
            if rule.fix is None:
                continue
            for index, example in enumerate(rule.examples.fail):
                if not _simulable(example):
                    outcomes.append(FixOutcome(policy.source, rule.id, index, None, "states derived facts"))
                    continue
                fixed = fixed_observation(example_observation(example), rule.fix)
                setting = assess(fixed) if fixed is not None else None
                if fixed is None or setting is None:
                    outcomes.append(FixOutcome(policy.source, rule.id, index, None, "no key applies"))
                    continue
                results = evaluate_facts(extract_facts(fixed, setting), policies)
                result = next(r for r in results if r.rule_id == rule.id)
                outcomes.append(FixOutcome(policy.source, rule.id, index, result.status, result.message))
    return outcomes
