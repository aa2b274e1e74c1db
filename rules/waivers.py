"""Waivers: justified, scoped, expiring exceptions that turn a covered `fail` into `waived` (pure)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, StrictStr, model_validator

from rules.compile import string_match
from rules.models import RULE_ID, StringMatch
from scanner.core.models import Frozen, Strict, Target
from scanner.core.results import RuleResult, Status, WaiverNote, host_identity
from scanner.core.yamlfile import FileError, load_file

EXPIRY_WARNING_DAYS = 14


class HostSelector(Strict):
    """Which hosts a waiver covers; every given selector must match. Names are case-insensitive."""

    names: list[Annotated[StrictStr, Field(min_length=1)]] | None = None
    glob: Annotated[StrictStr, Field(min_length=1)] | None = None
    tags: dict[StrictStr, StringMatch] | None = None

    @model_validator(mode="after")
    def _some(self) -> HostSelector:
        if not self.names and not self.glob and not self.tags:
            raise ValueError("give at least one of: names, glob, tags (a waiver never covers every host)")
        return self


class Waiver(Strict):
    """One exception: which rules on which hosts, why, who, until when."""

    id: Annotated[StrictStr, Field(pattern=RULE_ID)] | None = None
    rules: list[Annotated[StrictStr, Field(pattern=RULE_ID)]] = Field(min_length=1)
    hosts: HostSelector
    justification: Annotated[StrictStr, Field(min_length=1)]
    owner: StrictStr | None = None
    approver: StrictStr | None = None
    ticket: StrictStr | None = None
    expires: date  # the last day the waiver is in force (inclusive, UTC)

    @model_validator(mode="after")
    def _justified(self) -> Waiver:
        if not self.justification.strip():
            raise ValueError("justification must not be blank")
        return self


class WaiverFile(Strict):
    """A waivers file: `waivers: [...]`."""

    waivers: list[Waiver] = Field(default_factory=list)


class WaiverRef(Frozen):
    """What a report shows about a waiver."""

    label: str  # id, else ticket, else "FILE:LINE"
    rules: list[str]
    justification: str
    owner: str | None
    approver: str | None
    ticket: str | None
    expires: date
    source: str  # "waivers.yaml:12"


@dataclass(frozen=True)
class CompiledWaiver:
    """A waiver with its host selector compiled."""

    waiver: Waiver
    ref: WaiverRef
    matches: Callable[[Target], bool]


@dataclass(frozen=True)
class WaiverSet:
    """Every waiver of one file, compiled."""

    path: str
    waivers: tuple[CompiledWaiver, ...]


def _tag_test(tag: str, fn: Callable[[str | None], bool]) -> Callable[[Target], bool]:
    return lambda t: fn(t.tags.get(tag))


def _compile_selector(sel: HostSelector) -> Callable[[Target], bool]:
    tests: list[Callable[[Target], bool]] = []
    if sel.names:
        names = frozenset(host_identity(n) for n in sel.names)
        tests.append(lambda t: host_identity(t.name) in names)
    if sel.glob:
        rx = re.compile(fnmatch.translate(sel.glob.lower()))
        tests.append(lambda t: rx.match(host_identity(t.name)) is not None)
    for tag, match in sorted((sel.tags or {}).items()):
        tests.append(_tag_test(tag, string_match(match)))
    return lambda t: all(test(t) for test in tests)


def compile_waivers(
    file: WaiverFile, path: str, positions: Mapping[int, int | None] | None = None
) -> WaiverSet:
    """Compile validated waivers; `positions` maps an index to its line for labels."""
    out = []
    for i, w in enumerate(file.waivers):
        line = (positions or {}).get(i)
        source = f"{path}:{line}" if line else f"{path}#{i}"
        ref = WaiverRef(
            label=w.id or w.ticket or source,
            rules=list(w.rules),
            justification=w.justification,
            owner=w.owner,
            approver=w.approver,
            ticket=w.ticket,
            expires=w.expires,
            source=source,
        )
        out.append(CompiledWaiver(w, ref, _compile_selector(w.hosts)))
    return WaiverSet(path, tuple(out))


def load_waivers(path: str | Path) -> WaiverSet:
    """Load a waivers file; raise FileError (file:line:col: field: message) if it is not valid."""
    doc = load_file(path)
    file = doc.validate(WaiverFile)
    seen: dict[str, int | None] = {}
    positions: dict[int, int | None] = {}
    for i, w in enumerate(file.waivers):
        line, _ = doc.where(("waivers", i))
        positions[i] = line
        if w.id is not None:
            if w.id in seen:
                id_line, id_col = doc.where(("waivers", i, "id"))
                raise FileError(
                    doc.path,
                    id_line,
                    id_col,
                    f"waivers.{i}.id: duplicate waiver id {w.id!r} (first on line {seen[w.id]})",
                )
            seen[w.id] = line
    return compile_waivers(file, doc.path, positions)


def waivers_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of a waivers file, for editors and `natt-audit schema waivers`."""
    schema = WaiverFile.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "natt-audit waivers"
    return schema


def _describe(ref: WaiverRef) -> str:
    who = ", ".join(
        f"{k} {v}" for k, v in (("ticket", ref.ticket), ("owner", ref.owner), ("approver", ref.approver)) if v
    )
    return f"{ref.label} ({who + ', ' if who else ''}expires {ref.expires.isoformat()})"


def _note(w: CompiledWaiver, state: str) -> WaiverNote:
    ref = w.ref
    return WaiverNote(
        label=ref.label,
        state=state,
        justification=ref.justification.strip(),
        owner=ref.owner,
        approver=ref.approver,
        ticket=ref.ticket,
        expires=ref.expires.isoformat(),
        source=ref.source,
    )


def apply_waivers(
    target: Target, results: Sequence[RuleResult], waivers: WaiverSet | None, *, today: date
) -> list[RuleResult]:
    """Return the results with covered failures `waived`; expired waivers only annotate. Pure."""
    if waivers is None or not waivers.waivers:
        return list(results)
    mine = [w for w in waivers.waivers if w.matches(target)]
    out = []
    for r in results:
        covering = [w for w in mine if r.rule_id in w.waiver.rules]
        if r.status is not Status.FAIL or not covering:
            out.append(r)  # only failures are waived: an error is a coverage problem, never waived
            continue
        valid = [w for w in covering if w.waiver.expires >= today]
        if valid:
            # The longest-lasting waiver wins; ties by label, so the choice is deterministic.
            w = max(valid, key=lambda c: (c.waiver.expires, c.ref.label))
            message = (
                f"waived by {_describe(w.ref)}: {w.waiver.justification.strip()} | evidence: {r.message}"
            )
            note = _note(w, "applied")
            out.append(r.model_copy(update={"status": Status.WAIVED, "message": message, "waiver": note}))
        else:
            w = max(covering, key=lambda c: (c.waiver.expires, c.ref.label))
            message = f"{r.message} [waiver {_describe(w.ref)} expired]"
            out.append(r.model_copy(update={"message": message, "waiver": _note(w, "expired")}))
    return out


@dataclass(frozen=True)
class WaiverSummary:
    """What the console summary and the JSON report say about waivers."""

    expiring: tuple[WaiverRef, ...]  # in force, expiring within the warning window
    expired: tuple[WaiverRef, ...]
    unmatched: tuple[WaiverRef, ...]  # cover no host of the inventory, or no loaded rule


def summarize(
    waivers: WaiverSet | None,
    targets: Iterable[Target],
    rule_ids: Iterable[str],
    *,
    today: date,
    warn_days: int = EXPIRY_WARNING_DAYS,
) -> WaiverSummary:
    """Classify waivers for a scan: expiring soon, expired, and those matching nothing (to warn about)."""
    if waivers is None:
        return WaiverSummary((), (), ())
    hosts = list(targets)
    rules = set(rule_ids)
    horizon = today + timedelta(days=warn_days)
    expiring, expired, unmatched = [], [], []
    for w in waivers.waivers:
        if w.waiver.expires < today:
            expired.append(w.ref)
        elif w.waiver.expires <= horizon:
            expiring.append(w.ref)
        if not any(w.matches(t) for t in hosts) or not rules.intersection(w.waiver.rules):
            unmatched.append(w.ref)

    def order(refs: list[WaiverRef]) -> tuple[WaiverRef, ...]:
        return tuple(sorted(refs, key=lambda r: (r.expires, r.label)))

    return WaiverSummary(order(expiring), order(expired), order(unmatched))
