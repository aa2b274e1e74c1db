"""Load and validate policy files strictly (scanner.core.yamlfile), and the built-in policies."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from rules.compile import compile_policies, ruleset
from rules.models import Policy, PolicyError
from scanner.core.yamlfile import FileError, YamlDocument, load_file, load_text

BUILTINS = ("baseline", "strict")

__all__ = [
    "BUILTINS",
    "FileError",
    "Policy",
    "PolicyError",
    "builtin_policy",
    "load_policy",
    "policy_from_document",
    "policy_json_schema",
    "resolve_policies",
]


def policy_from_document(doc: YamlDocument, source: str | None = None) -> Policy:
    """Validate a parsed document as a policy; raise FileError naming file:line:col and the field."""
    policy = doc.validate(Policy)
    positions: dict[str, tuple[int | None, int | None]] = {}
    for i, rule in enumerate(policy.rules):
        where = doc.where(("rules", i, "id"))
        if rule.id in positions:
            first = positions[rule.id][0]
            raise FileError(
                doc.path,
                where[0],
                where[1],
                f"rules.{i}.id: duplicate rule id {rule.id!r} (first on line {first})",
            )
        positions[rule.id] = where
    policy._source = source or doc.path
    policy._positions = positions
    policy._sha256 = doc.sha256
    try:
        ruleset([policy]) if not _external_overrides(policy) else _check_local_cycles(policy)
    except PolicyError as exc:
        raise FileError(doc.path, exc.line, exc.column, exc.message) from None
    return policy


def _external_overrides(policy: Policy) -> bool:
    ids = {r.id for r in policy.rules}
    return any(t not in ids for r in policy.rules for t in r.overrides)


def _check_local_cycles(policy: Policy) -> None:
    # Overrides of rules in other policies are resolved by resolve_policies(); check the local part.
    ids = {r.id for r in policy.rules}
    local = [r.model_copy(update={"overrides": [t for t in r.overrides if t in ids]}) for r in policy.rules]
    compile_policies([policy.model_copy(update={"rules": local})])


def load_policy(path: str | Path) -> Policy:
    """Load one policy file; raise FileError (file:line:col: field: message) if it is not valid."""
    return policy_from_document(load_file(path), str(path))


def builtin_policy(name: str) -> Policy:
    """Return a built-in policy ("baseline", "strict"); PolicyError for any other name."""
    if name not in BUILTINS:
        raise PolicyError(f"no built-in policy {name!r}; built-ins: {', '.join(BUILTINS)}")
    cached = _BUILTIN_CACHE.get(name)
    if cached is None:
        text = resources.files("rules").joinpath("policies", f"{name}.yaml").read_text("utf-8")
        cached = policy_from_document(load_text(text, f"rules/policies/{name}.yaml"), f"builtin:{name}")
        _BUILTIN_CACHE[name] = cached
    return cached


_BUILTIN_CACHE: dict[str, Policy] = {}


def resolve_policies(specs: Sequence[str]) -> list[Policy]:
    """Load each spec (a built-in name or a file path); [] means [baseline]. Checks the set as a whole."""
    policies = [builtin_policy(s) if s in BUILTINS else load_policy(s) for s in specs or ["baseline"]]
    compile_policies(policies)  # duplicate ids across files, unresolved overrides, override cycles
    return policies


def policy_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of a policy file, for editors and `natt-audit schema policy`."""
    schema = Policy.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "natt-audit policy"
    return schema
