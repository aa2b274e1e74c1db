"""The policy language: rules, scopes, checks and examples, validated from YAML (docs/policies.md)."""

from __future__ import annotations

import difflib
import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Never, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    PlainValidator,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from rules.remediation import Fix
from scanner.core.errors import NattError
from scanner.core.models import Strict, parse_version
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
COMBINATORS = ("all", "any", "none")
NODE_KEYS = frozenset({"fact", *OPERATORS, *COMBINATORS})


def fact_kind(name: str) -> Kind | None:
    """Return the kind of a fact name, None when no such fact exists."""
    if name.startswith(TAG_PREFIX) and len(name) > len(TAG_PREFIX):
        return Kind.STR
    return FACTS.get(name)


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
    if kind is Kind.VERSION and parse_version(value) is None:
        raise ValueError(f"{fact} operand {value!r} is not a dotted version such as 6.0 or 10.0.19045")


# ---------------------------------------------------------------------------------------------
# Check nodes: one model per operator and per combinator, picked by the one key that names it.


class Comparison(Strict):
    """A comparison `{fact: NAME, OPERATOR: VALUE}`; each operator is a subclass holding its operand."""

    OPERATOR: ClassVar[str]
    FIELD: ClassVar[str]  # the attribute holding the operand: `in` is a Python keyword

    fact: StrictStr

    @field_validator("fact")
    @classmethod
    def _known_fact(cls, value: str) -> str:
        if fact_kind(value) is None:
            raise ValueError(f"unknown fact {value!r}; known: {', '.join(sorted(FACTS))}, tags.<name>")
        return value

    @property
    def operator(self) -> str:
        """Return the operator as the policy spells it."""
        return self.OPERATOR

    @property
    def operand(self) -> Any:
        """Return the operand as the policy gives it."""
        return getattr(self, self.FIELD)

    @property
    def kind(self) -> Kind:
        """Return the kind of the fact this comparison reads."""
        kind = fact_kind(self.fact)
        if kind is None:  # pragma: no cover - refused by _known_fact with the exact position
            raise PolicyError(f"unknown fact {self.fact!r}")
        return kind

    @model_validator(mode="after")
    def _fits_fact(self) -> Self:
        if self.kind is Kind.LIST and self.OPERATOR != "exists":
            raise ValueError(f"{self.fact} is a list: only `exists` applies (use stray_count to count)")
        self._check(self.kind)
        return self

    def _check(self, kind: Kind) -> None:
        """Refuse an operand that can never be meaningful for this fact; each operator has its rule."""


class Equals(Comparison):
    """`equals: VALUE`: the fact has this value (type-aware); `equals: null` asks whether it is absent."""

    OPERATOR: ClassVar[str] = "equals"
    FIELD: ClassVar[str] = "equals"
    equals: Scalar

    def _check(self, kind: Kind) -> None:
        _check_operand(self.fact, kind, self.OPERATOR, self.equals)


class NotEquals(Comparison):
    """`not_equals: VALUE`: the fact is known and has another value."""

    OPERATOR: ClassVar[str] = "not_equals"
    FIELD: ClassVar[str] = "not_equals"
    not_equals: Scalar

    def _check(self, kind: Kind) -> None:
        _check_operand(self.fact, kind, self.OPERATOR, self.not_equals)


class In(Comparison):
    """`in: [VALUES]`: the fact equals one of the values."""

    OPERATOR: ClassVar[str] = "in"
    FIELD: ClassVar[str] = "in_"
    in_: list[Scalar] = Field(alias="in")

    def _check(self, kind: Kind) -> None:
        for item in self.in_:
            _check_operand(self.fact, kind, self.OPERATOR, item)


class NotIn(Comparison):
    """`not_in: [VALUES]`: the fact is known and equals none of the values."""

    OPERATOR: ClassVar[str] = "not_in"
    FIELD: ClassVar[str] = "not_in"
    not_in: list[Scalar]

    def _check(self, kind: Kind) -> None:
        for item in self.not_in:
            _check_operand(self.fact, kind, self.OPERATOR, item)


def _bound(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("the bound is an integer (or a version string for os.version)")
    return value


Bound = Annotated[StrictInt | StrictStr, BeforeValidator(_bound)]


class Ordering(Comparison):
    """The rule less_than and greater_than share: integer facts, or os.version compared part by part."""

    def _check(self, kind: Kind) -> None:
        op, value = self.OPERATOR, self.operand
        if kind not in (Kind.INT, Kind.VERSION, Kind.ANY):
            raise ValueError(f"{op} applies to integer facts and os.version, not {self.fact}")
        if kind is Kind.VERSION:
            if not isinstance(value, str):
                raise ValueError(f"{op} on os.version takes a version string such as '6.0', got {value!r}")
            _check_operand(self.fact, kind, op, value)
        elif not isinstance(value, int):
            raise ValueError(f"{op} on {self.fact} takes an integer, got {value!r}")


class LessThan(Ordering):
    """`less_than: N`: the fact is an integer (or os.version) below N."""

    OPERATOR: ClassVar[str] = "less_than"
    FIELD: ClassVar[str] = "less_than"
    less_than: Bound


class GreaterThan(Ordering):
    """`greater_than: N`: the fact is an integer (or os.version) above N."""

    OPERATOR: ClassVar[str] = "greater_than"
    FIELD: ClassVar[str] = "greater_than"
    greater_than: Bound


class Exists(Comparison):
    """`exists: true|false`: whether the fact has a value (a non-empty list, for `stray`)."""

    OPERATOR: ClassVar[str] = "exists"
    FIELD: ClassVar[str] = "exists"
    exists: StrictBool


class Matches(Comparison):
    """`matches: REGEX`: the fact is a string the regular expression finds a match in."""

    OPERATOR: ClassVar[str] = "matches"
    FIELD: ClassVar[str] = "matches"
    matches: Annotated[StrictStr, Field(max_length=MAX_REGEX)]

    def _check(self, kind: Kind) -> None:
        if kind not in (Kind.STR, Kind.VERSION, Kind.ANY):
            raise ValueError(f"matches applies to string facts, not {self.fact}")
        try:
            re.compile(self.matches)
        except re.error as exc:
            raise ValueError(f"bad regular expression {self.matches!r}: {exc}") from None


class Combinator(Strict):
    """`all`, `any` or `none` of a non-empty list of nodes; each is a subclass."""

    COMBINATOR: ClassVar[str]

    @property
    def children(self) -> list[Condition]:
        """Return the nodes this one combines."""
        children: list[Condition] = getattr(self, self.COMBINATOR)
        return children

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.children:
            raise ValueError(f"{self.COMBINATOR} needs at least one node")
        return self


class AllOf(Combinator):
    """`all: [nodes]`: every node holds."""

    COMBINATOR: ClassVar[str] = "all"
    all: list[Condition]


class AnyOf(Combinator):
    """`any: [nodes]`: at least one node holds."""

    COMBINATOR: ClassVar[str] = "any"
    any: list[Condition]


class NoneOf(Combinator):
    """`none: [nodes]`: no node holds."""

    COMBINATOR: ClassVar[str] = "none"
    none: list[Condition]


# Tags are spelled node[...]: scanner/core/yamlfile.py drops loc parts holding "[" (union member
# names), so an error inside a node names the node's own fields and their file:line:col.
_REFUSED = "node[refused]"
_SHAPES = (
    "a check node is {fact: NAME, OPERATOR: VALUE} with one OPERATOR of "
    + ", ".join(OPERATORS)
    + "; or one of all, any, none with a list of nodes"
)


def _node_tag(value: Any) -> str:
    """Pick the variant by the one operator or combinator key present; any other shape is refused."""
    if isinstance(value, Comparison):
        return f"node[{value.OPERATOR}]"
    if isinstance(value, Combinator):
        return f"node[{value.COMBINATOR}]"
    if not isinstance(value, dict) or not set(value) <= NODE_KEYS:
        return _REFUSED
    named = [key for key in value if key != "fact"]
    # One operator next to `fact`, or one combinator alone.
    if len(named) != 1 or (named[0] in COMBINATORS) == ("fact" in value):
        return _REFUSED
    return f"node[{named[0]}]"


def _known_key(key: Any) -> Any:
    if key not in NODE_KEYS:
        close = difflib.get_close_matches(str(key), sorted(NODE_KEYS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown key {key!r}{hint}: {_SHAPES}")
    return key


# Validating the keys as a mapping puts each unknown key's error at that key (loc KEY, "[key]").
_NODE_KEYS: TypeAdapter[dict[Any, Any]] = TypeAdapter(dict[Annotated[Any, AfterValidator(_known_key)], Any])


def _refuse(value: Any) -> Never:
    """Raise the most specific error for a node no variant takes; unknown keys at their own place."""
    if not isinstance(value, dict):
        raise ValueError(f"{_SHAPES}; got {type(value).__name__}")
    _NODE_KEYS.validate_python(value)  # raises ValidationError naming every unknown key
    ops = [key for key in value if key in OPERATORS]
    if any(key in COMBINATORS for key in value):
        raise ValueError("a node is exactly one of: all, any, none, or {fact, operator}")
    if "fact" not in value and ops:
        raise ValueError(f"a comparison needs `fact` next to {ops[0]}: {{fact: NAME, {ops[0]}: VALUE}}")
    if "fact" not in value:
        raise ValueError(f"a node needs `fact` and one operator ({', '.join(OPERATORS)}), or all/any/none")
    raise ValueError(f"a comparison has exactly one operator ({', '.join(OPERATORS)}); got {ops or 'none'}")


# The refused shape never validates (it always raises), so it adds nothing to the static type, and
# its JSON Schema matches nothing, leaving `oneOf` to the real variants.
_Refused = Annotated[Never, PlainValidator(_refuse), WithJsonSchema({"not": {}}), Tag(_REFUSED)]
Condition = Annotated[
    Annotated[Equals, Tag("node[equals]")]
    | Annotated[NotEquals, Tag("node[not_equals]")]
    | Annotated[In, Tag("node[in]")]
    | Annotated[NotIn, Tag("node[not_in]")]
    | Annotated[LessThan, Tag("node[less_than]")]
    | Annotated[GreaterThan, Tag("node[greater_than]")]
    | Annotated[Exists, Tag("node[exists]")]
    | Annotated[Matches, Tag("node[matches]")]
    | Annotated[AllOf, Tag("node[all]")]
    | Annotated[AnyOf, Tag("node[any]")]
    | Annotated[NoneOf, Tag("node[none]")]
    | _Refused,
    Discriminator(_node_tag),
]
for _combinator in (AllOf, AnyOf, NoneOf):
    _combinator.model_rebuild()
_CONDITION: TypeAdapter[Condition] = TypeAdapter(Condition)


def parse_condition(data: Any) -> Condition:
    """Validate one check node and its children from plain data, as a policy file holds it."""
    return _CONDITION.validate_python(data)


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
    if value is not None and parse_version(value) is None:
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
        lo = parse_version(self.at_least) if self.at_least else None
        hi = parse_version(self.below) if self.below else None
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
