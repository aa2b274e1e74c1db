"""The drift and waiver sections as lists of lines, shared by the console and HTML reports.

Both renderers show the same groups in the same order with the same words; each only styles them
(a tone per group) and makes the text safe for its own output context.
"""

from __future__ import annotations

from typing import Literal

from reports.model import Drift, WaiverEntry, WaiversSection
from scanner.core.wording import count

Tone = Literal["bad", "worse", "good", "change", "neutral", "dim"]


def drift_groups(drift: Drift) -> list[tuple[str, Tone, list[str]]]:
    """Return each non-empty drift group as ("2 new failures", tone, one line per host or finding)."""
    groups: list[tuple[str, str, Tone, list[str]]] = [
        ("new failure", "new failures", "bad", [f"{f.host} {f.rule_id}" for f in drift.new_failures]),
        ("resolved", "resolved", "good", [f"{f.host} {f.rule_id}" for f in drift.resolved_failures]),
        (
            "setting change",
            "setting changes",
            "change",
            [f"{c.host} {c.field} {c.before} -> {c.after}" for c in drift.changed_settings],
        ),
        (
            "newly unreachable",
            "newly unreachable",
            "worse",
            [f"{h.host} ({h.reason})" for h in drift.newly_unreachable],
        ),
        ("reachable again", "reachable again", "good", [h.host for h in drift.reachable_again]),
        ("joined", "joined", "neutral", list(drift.joined)),
        ("left", "left", "dim", list(drift.left)),
    ]
    return [(count(len(lines), one, many), tone, lines) for one, many, tone, lines in groups if lines]


def waiver_groups(section: WaiversSection) -> list[tuple[str, Tone, list[str]]]:
    """Return each non-empty waiver group as (title, tone, one line per waiver)."""
    groups: list[tuple[str, Tone, list[str]]] = []
    sections: tuple[tuple[str, list[WaiverEntry], Tone], ...] = (
        (f"expiring within {count(section.warn_days, 'day')}", section.expiring, "bad"),
        ("expired (no effect)", section.expired, "worse"),
        ("match no host or rule", section.unmatched, "bad"),
    )
    for title, entries, tone in sections:
        lines: list[str] = []
        for entry in entries:
            line = f"{entry.label} ({', '.join(entry.rules)}) expires {entry.expires}"
            if entry.owner:
                line += f", owner {entry.owner}"
            lines.append(line)
        if lines:
            groups.append((title, tone, lines))
    return groups
