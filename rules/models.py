"""The policy language: rules, scopes, checks and examples, validated from YAML (docs/policies.md)."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from rules.remediation import Fix
from scanner.core.errors import NattError
from scanner.core.results import Severity
from scanner.core.semantics import Integrity, OsFamily

Scalar = StrictBool | StrictInt | StrictStr | None
RULE_ID = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
MAX_REGEX = 512  # patterns are policy-author text, but keep them small enough to review


class PolicyError(NattError):
    """A policy (set) that cannot be used: unknown name, unresolved override, duplicate rule id, cycle."""

    def __init__(
        self, message: str, path: str | None = None, line: int | None = None, column: int | None = None
    ):
        self.message, self.path, self.line, self.column = message, path, line, column
        where = (
            ""
            if path is None
            else path + (f":{line}" if line else "") + (f":{column}" if line and column else "")
        )
        super().__init__(f"{where}: {message}" if where else message)


class Kind(StrEnum):
    """The value type of a fact, checked against operands when a policy is loaded."""

    INT = "int"
    BOOL = "bool"
    STR = "str"
    VERSION = "version"  # dotted Windows version: less_than/greater_than compare numerically
    ANY = "any"  # raw_value: whatever the host stored (int, str, list[str] or null)
    LIST = "list"  # stray: only `exists`


# Every fact a check can read (docs/policies.md#facts) and its kind. `tags.<name>` is a STR fact for any name.
FACTS: dict[str, Kind] = {
    "effective_mode": Kind.INT,
    "present": Kind.BOOL,
    "key_present": Kind.BOOL,
    "raw_type": Kind.STR,
    "raw_value": Kind.ANY,
    "integrity": Kind.STR,
    "stray": Kind.LIST,
    "stray_count": Kind.INT,
    "value_name": Kind.STR,
    "name_canonical": Kind.BOOL,
    "os.version": Kind.VERSION,
    "os.build": Kind.INT,
    "os.service_pack": Kind.INT,
    "os.family": Kind.STR,
    "group": Kind.STR,
    "address": Kind.STR,
    "address_private": Kind.BOOL,
}
TAG_PREFIX = "tags."
# Facts whose string operands are closed sets: a typo is refused at load instead of never matching.
ENUMS: dict[str, frozenset[str]] = {
    "integrity": frozenset(i.value for i in Integrity),
    "os.family": frozenset(f.value for f in OsFamily),
}
OPERATORS = ("equals", "not_equals", "in", "not_in", "less_than", "greater_than", "exists", "matches")
_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")


def fact_kind(name: str) -> Kind | None:
    """Return the kind of a fact name, None when no such fact exists."""
    if name.startswith(TAG_PREFIX) and len(name) > len(TAG_PREFIX):
        return Kind.STR
    return FACTS.get(name)


def version_tuple(text: str) -> tuple[int, ...] | None:
    """Parse "10.0.19045" into (10, 0, 19045); None when it is not a dotted number."""
    text = text.strip()
    if not _VERSION.match(text):
        return None
    return tuple(int(p) for p in text.split("."))


class Strict(BaseModel):
    """Base for policy-file models: unknown fields are refused, values are immutable."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


_KIND_NAMES = {
    Kind.INT: "an integer",
    Kind.BOOL: "a boolean",
    Kind.STR: "a string",
    Kind.VERSION: "a version string",
    Kind.ANY: "any value",
    Kind.LIST: "a list",
}
_TYPE_NAMES = {int: "an integer", bool: "a boolean", str: "a string"}


def _check_operand(fact: str, kind: Kind, op: str, value: Any) -> None:
    """Refuse an operand that can never be meaningful for the fact's kind."""
    if value is None:
        return  # `equals: null` asks "is it absent?", meaningful for every fact
    if kind is Kind.ANY:
        return
    expected: tuple[type, ...] = {
        Kind.INT: (int,),
        Kind.BOOL: (bool,),
        Kind.STR: (str,),
        Kind.VERSION: (str,),
        Kind.LIST: (),
    }[kind]
    is_bool = isinstance(value, bool)
    ok = isinstance(value, expected) and (kind is Kind.BOOL or not is_bool)
    if not ok:
        raise ValueError(
            f"{fact} is {_KIND_NAMES[kind]}; the {op} operand {value!r} is "
            f"{_TYPE_NAMES.get(type(value), 'not')}"
        )
    if fact in ENUMS and value not in ENUMS[fact]:
        raise ValueError(f"{fact} is one of {sorted(ENUMS[fact])}; got {value!r}")
    if kind is Kind.VERSION and version_tuple(value) is None:
        raise ValueError(f"{fact} operand {value!r} is not a dotted version such as 6.0 or 10.0.19045")


class Condition(Strict):
    """One check node: a comparison `{fact: NAME, OPERATOR: VALUE}` or `all`/`any`/`none` of nodes."""

    all: list[Condition] | None = None
    any: list[Condition] | None = None
    none: list[Condition] | None = None
    fact: StrictStr | None = None
    equals: Scalar = None
    not_equals: Scalar = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None
    less_than: StrictInt | StrictStr | None = None
    greater_than: StrictInt | StrictStr | None = None
    exists: StrictBool | None = None
    matches: Annotated[StrictStr, Field(max_length=MAX_REGEX)] | None = None

    @property
    def operator(self) -> str | None:
        """Return the one operator of a comparison node."""
        ops = [op for op in OPERATORS if (op if op != "in" else "in_") in self.model_fields_set]
        return ops[0] if len(ops) == 1 else None

    @property
    def operand(self) -> Any:
        """Return the operand of a comparison node."""
        op = self.operator
        return getattr(self, "in_" if op == "in" else op) if op else None

    @field_validator("fact")
    @classmethod
    def _known_fact(cls, value: str | None) -> str | None:
        if value is not None and fact_kind(value) is None:
            raise ValueError(f"unknown fact {value!r}; known: {', '.join(sorted(FACTS))}, tags.<name>")
        return value

    @model_validator(mode="after")
    def _one_shape(self) -> Condition:
        combos = [k for k in ("all", "any", "none") if k in self.model_fields_set]
        ops = [op for op in OPERATORS if (op if op != "in" else "in_") in self.model_fields_set]
        if combos:
            if len(combos) > 1 or ops or self.fact is not None:
                raise ValueError("a node is exactly one of: all, any, none, or {fact, operator}")
            if not getattr(self, combos[0]):
                raise ValueError(f"{combos[0]} needs at least one node")
            return self
        if self.fact is None:
            raise ValueError(
                f"a node needs `fact` and one operator ({', '.join(OPERATORS)}), or all/any/none"
            )
        kind = fact_kind(self.fact)
        if kind is None:  # pragma: no cover - refused by _known_fact with the exact position
            raise ValueError(f"unknown fact {self.fact!r}")
        if len(ops) != 1:
            raise ValueError(
                f"a comparison has exactly one operator ({', '.join(OPERATORS)}); got {ops or 'none'}"
            )
        op, value = ops[0], self.operand
        if kind is Kind.LIST and op != "exists":
            raise ValueError(f"{self.fact} is a list: only `exists` applies (use stray_count to count)")
        if op in ("equals", "not_equals", "exists"):
            if op == "exists" and value is None:
                raise ValueError("exists takes true or false")
            if op != "exists":
                _check_operand(self.fact, kind, op, value)
        elif op in ("in", "not_in"):
            if value is None:
                raise ValueError(f"{op} takes a list")
            for item in value:
                _check_operand(self.fact, kind, op, item)
        elif op in ("less_than", "greater_than"):
            if kind not in (Kind.INT, Kind.VERSION, Kind.ANY):
                raise ValueError(f"{op} applies to integer facts and os.version, not {self.fact}")
            if value is None or isinstance(value, bool):
                raise ValueError(f"{op} takes an integer (or a version string for os.version)")
            if kind is Kind.VERSION:
                if not isinstance(value, str):
                    raise ValueError(
                        f"{op} on os.version takes a version string such as '6.0', got {value!r}"
                    )
                _check_operand(self.fact, kind, op, value)
            elif not isinstance(value, int):
                raise ValueError(f"{op} on {self.fact} takes an integer, got {value!r}")
        elif op == "matches":
            if kind not in (Kind.STR, Kind.VERSION, Kind.ANY):
                raise ValueError(f"matches applies to string facts, not {self.fact}")
            if value is None:
                raise ValueError("matches takes a regular expression")
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regular expression {value!r}: {exc}") from None
        return self


class StringMatch(Strict):
    """Select by a string: exactly one of equals, in, not_in, glob, exists."""

    equals: StrictStr | None = None
    in_: list[StrictStr] | None = Field(default=None, alias="in")
    not_in: list[StrictStr] | None = None
    glob: StrictStr | None = None
    exists: StrictBool | None = None

    @model_validator(mode="after")
    def _one(self) -> StringMatch:
        if len(self.model_fields_set) != 1:
            raise ValueError("give exactly one of: equals, in, not_in, glob, exists")
        if (
            next(iter(self.model_fields_set)) != "exists"
            and getattr(self, next(iter(self.model_fields_set))) is None
        ):
            raise ValueError("the selector needs a value")
        return self


class FamilyMatch(Strict):
    """Select by OS family: exactly one of in, not_in."""

    in_: list[OsFamily] | None = Field(default=None, alias="in")
    not_in: list[OsFamily] | None = None

    @model_validator(mode="after")
    def _one(self) -> FamilyMatch:
        if len(self.model_fields_set) != 1 or (self.in_ is None and self.not_in is None):
            raise ValueError("give exactly one of: in, not_in")
        return self


def _version(value: str | None) -> str | None:
    if value is not None and version_tuple(value) is None:
        raise ValueError(f"{value!r} is not a dotted version such as 6.0 or 10.0.19045")
    return value


class VersionRange(Strict):
    """Select by NT version: at_least (inclusive) and/or below (exclusive), compared numerically."""

    at_least: StrictStr | None = None
    below: StrictStr | None = None

    @model_validator(mode="after")
    def _range(self) -> VersionRange:
        _version(self.at_least)
        _version(self.below)
        if self.at_least is None and self.below is None:
            raise ValueError("give at_least, below or both")
        lo = version_tuple(self.at_least) if self.at_least else None
        hi = version_tuple(self.below) if self.below else None
        if lo is not None and hi is not None and lo >= hi:
            raise ValueError(f"empty range: at_least {self.at_least} is not below {self.below}")
        return self


class Scope(Strict):
    """Which hosts a rule speaks about; every given selector must match. Empty: every host."""

    tags: dict[StrictStr, StringMatch] = Field(default_factory=dict)
    group: StringMatch | None = None
    os_family: FamilyMatch | None = None
    os_version: VersionRange | None = None


def _example(value: dict[str, Any]) -> dict[str, Any]:
    # Imported here: rules.facts depends on this module. Building the example host checks names and types.
    from rules.facts import example_facts

    example_facts(value)
    return value


Example = Annotated[dict[StrictStr, Any], AfterValidator(_example)]


class Examples(Strict):
    """Facts of hypothetical hosts and the outcome the rule must give them (`policy test`)."""

    pass_: list[Example] = Field(default_factory=list, alias="pass")
    fail: list[Example] = Field(default_factory=list)
    not_applicable: list[Example] = Field(default_factory=list)


class Rule(Strict):
    """One rule: identity, explanation, where it applies, what it checks, and examples."""

    id: Annotated[StrictStr, Field(pattern=RULE_ID)]
    title: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    severity: Severity
    rationale: Annotated[StrictStr, Field(min_length=1)]
    remediation: Annotated[StrictStr, Field(min_length=1)]
    references: list[StrictStr] = Field(default_factory=list)
    scope: Scope = Field(default_factory=Scope)
    # Rules this one supersedes for every host in its scope (docs/policies.md "Precedence").
    overrides: list[Annotated[StrictStr, Field(pattern=RULE_ID)]] = Field(default_factory=list)
    check: Condition
    examples: Examples = Field(default_factory=Examples)
    fix: Fix | None = None  # what `natt-audit remediate` plans for a failure (rules/remediation.py)

    @model_validator(mode="after")
    def _no_self_override(self) -> Rule:
        if self.id in self.overrides:
            raise ValueError(f"rule {self.id} cannot override itself")
        return self


class Policy(Strict):
    """A named set of rules from one file or a built-in."""

    name: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    description: StrictStr = ""
    version: StrictStr | StrictInt = 1
    rules: list[Rule] = Field(min_length=1)
    # Where it came from ("builtin:baseline" or a path) and where each rule id sits, for error messages.
    _source: str = PrivateAttr(default="")
    _positions: dict[str, tuple[int | None, int | None]] = PrivateAttr(default_factory=dict)

    @property
    def source(self) -> str:
        """Return "builtin:NAME" or the path the policy was loaded from."""
        return self._source or f"<{self.name}>"

    def rule_position(self, rule_id: str) -> tuple[int | None, int | None]:
        """Return the line and column of a rule's id in its file, when known."""
        return self._positions.get(rule_id, (None, None))
