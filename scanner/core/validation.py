"""Turn a pydantic ValidationError into every problem it holds, each with its place and a hint.

Policies, waivers, lab estates, inventories and the config file all report their validation
errors through `problems`, so they list every problem (never "and N more"), and an unknown key
close to a known one says which one it probably is (`did you mean 'severity'?`). A required field
reported missing because of such a typo names the typo too, so the two errors read as one mistake.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

Loc = tuple[str | int, ...]
_MAX_DEPTH = 12  # policy conditions nest; deeper than this no key is suggested


def did_you_mean(word: object, known: Iterable[str]) -> str:
    """Return " (did you mean 'x'?)" when a known name is close to `word`, else ""."""
    close = difflib.get_close_matches(str(word), sorted(set(known)), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_union_tag(part: str | int) -> bool:
    # pydantic appends union and tagged-union member names (e.g. "node[equals]", "function-after[...]")
    # to the location; they are not keys of the file.
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def clean_loc(loc: Sequence[str | int]) -> Loc:
    """Return the location with pydantic's union member names removed: the keys of the file only."""
    return tuple(p for p in loc if not _is_union_tag(p))


def _members(annotation: Any) -> Iterator[Any]:
    """Yield the concrete types an annotation stands for (through Annotated, Optional and unions)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        yield from _members(get_args(annotation)[0])
    elif origin is Union or origin is types.UnionType:
        for arg in get_args(annotation):
            yield from _members(arg)
    else:
        yield annotation


def _field_names(model: type[BaseModel]) -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        names.add(field.alias or name)
    return names


def known_keys(annotation: Any, loc: Loc, depth: int = 0) -> set[str]:
    """Return the keys a model accepts at `loc` (the union over every type that may stand there)."""
    if depth > _MAX_DEPTH:
        return set()
    found: set[str] = set()
    for member in _members(annotation):
        origin = get_origin(member) or member
        if isinstance(member, type) and issubclass(member, BaseModel):
            if not loc:
                found |= _field_names(member)
                continue
            for name, field in member.model_fields.items():
                if loc[0] in (name, field.alias):
                    found |= known_keys(field.annotation, loc[1:], depth + 1)
        elif loc and isinstance(origin, type) and issubclass(origin, Mapping):
            args = get_args(member)
            if len(args) == 2:
                found |= known_keys(args[1], loc[1:], depth + 1)
        elif loc and isinstance(loc[0], int) and isinstance(origin, type) and issubclass(origin, Sequence):
            args = get_args(member)
            if args:
                found |= known_keys(args[0], loc[1:], depth + 1)
    return found


def problems(exc: ValidationError, model: Any = None, *, unknown: str = "unknown field") -> list[tuple[Loc, str]]:
    """Return every (location, message) of `exc`; unknown keys of `model` get "did you mean"."""
    errors = exc.errors(include_url=False)
    extras: dict[Loc, list[str]] = {}
    for err in errors:
        if err["type"] == "extra_forbidden":
            loc = clean_loc(err["loc"])
            extras.setdefault(loc[:-1], []).append(str(loc[-1]))
    out: list[tuple[Loc, str]] = []
    for err in errors:
        loc = clean_loc(err["loc"])
        message = err["msg"]
        if err["type"] == "extra_forbidden" and loc:
            known = known_keys(model, loc[:-1]) if model is not None else set()
            hint = did_you_mean(loc[-1], known)
            if not hint and known:
                hint = f" (known: {', '.join(sorted(known))})"
            message = f"{unknown} {str(loc[-1])!r}{hint}"
        elif err["type"] == "missing" and loc:
            typos = [key for key in extras.get(loc[:-1], []) if did_you_mean(key, [str(loc[-1])])]
            if typos:
                message += f" (is {typos[0]!r} a misspelling of {str(loc[-1])!r}?)"
        out.append((loc, message))
    return out


def dotted(loc: Loc) -> str:
    """Return the location as the dotted field name used in messages (`rules.0.severity`)."""
    return ".".join(str(p) for p in loc) or "(document)"
