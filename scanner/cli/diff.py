"""`natt-audit diff`: drift between two scans of the history."""

from __future__ import annotations

import argparse
import json
import os
import sys

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from reports.formats.json_report import to_plain
from reports.lifecycle import drift_events
from reports.model import Drift
from scanner.cli.options import Subparsers, add_db_options, config_flags, config_option, fraction
from scanner.cli.output import open_history, print_renderable
from scanner.core.exitcodes import ExitCode
from scanner.core.results import Status, host_identity
from scanner.core.sanitize import console_text as safe_text
from scanner.core.sanitize import json_text
from scanner.core.wording import count
from scanner.history.drift import compute_drift, drift_between, drift_counts
from scanner.history.store import SqliteStore, StoreError
from scanner.inputs.config import load_config


def register(subparsers: Subparsers) -> None:
    """Add `diff [SCAN_A] [SCAN_B]`."""
    parser = subparsers.add_parser(
        "diff",
        help="drift between two scans (default: the last scan and the one before it)",
        description="With no scan: the newest scan against its baseline (the previous complete scan of "
        "its inventory whose coverage reaches --baseline-min-coverage), each host against its last "
        "read, as the scan reported it. With one: that scan against its baseline. With two: "
        "SCAN_A -> SCAN_B as they are. "
        "A scan is named by its id or a unique prefix of it.",
    )
    add_db_options(parser)
    parser.add_argument("scan_a", nargs="?", metavar="SCAN_A")
    parser.add_argument("scan_b", nargs="?", metavar="SCAN_B")
    parser.add_argument("-f", "--format", choices=["console", "json"], default="console")
    config_option(
        parser,
        "--baseline-min-coverage",
        key="baseline_min_coverage",
        type=fraction,
        metavar="F",
        help="with one scan or none: skip baselines below this coverage, as the scan did (default 0.5)",
    )
    parser.set_defaults(func=run)


def _pick(store: SqliteStore, args: argparse.Namespace) -> tuple[Drift, tuple[str, str], tuple[str, str]]:
    """Return the drift to show and the (id, start) of both scans."""
    if args.scan_b is not None:
        before = store.load_report(store.find_scan(args.scan_a).id)
        after = store.load_report(store.find_scan(args.scan_b).id)
        first, second = before.header.scan, after.header.scan
        return compute_drift(before, after), (first.id, first.started_at), (second.id, second.started_at)
    if args.scan_a is not None:
        row = store.find_scan(args.scan_a)
    else:
        latest = store.scans(limit=1)
        if not latest:
            raise StoreError("no scans recorded yet")
        row = latest[0]
    # As the scan itself computed it: against its baseline, each host against its last read
    # (docs/scheduling.md#drift-across-bad-nights), one host at a time.
    floor = load_config(path=args.config, environ=os.environ, flags=config_flags(args)).config.baseline_min_coverage
    previous = store.baseline_scan(row.inventory_id, current=row.id, started_at=row.started_at, min_coverage=floor)
    if previous is None:
        raise StoreError(
            f"scan {row.id} has no earlier complete scan of the same inventory with a coverage of at least "
            f"{floor:.0%} to compare with"
        )
    drift = drift_between(
        previous.id,
        previous.started_at,
        store.baseline_hosts(previous, current=row.id, started_at=row.started_at),
        store.host_reports(row.id, host_identity),
    )
    return drift, (previous.id, previous.started_at), (row.id, row.started_at)


# How each drift count reads after its number: (one, many).
_COUNTED = {
    "new_failures": ("new failure", "new failures"),
    "resolved_failures": ("resolved failure", "resolved failures"),
    "changed_failures": ("changed failure", "changed failures"),
    "changed_settings": ("host with changed settings", "hosts with changed settings"),
    "newly_unreachable": ("newly unreachable", "newly unreachable"),
    "reachable_again": ("reachable again", "reachable again"),
    "joined": ("joined", "joined"),
    "left": ("left", "left"),
}


def _st(status: Status | None) -> str:
    """Show a finding state; None means the host or rule was not in that scan."""
    return "(not scanned)" if status is None else status.value


def render_drift(drift: Drift, before: tuple[str, str], after: tuple[str, str]) -> RenderableType:
    """Return a terminal rendering of a drift between scans given as (id, start); host text made inert."""
    parts: list[RenderableType] = []
    head = Text("Drift ", style="bold")
    head.append_text(safe_text(f"{before[0][:8]} ({before[1]})"))
    head.append(" → ")
    head.append_text(safe_text(f"{after[0][:8]} ({after[1]})"))
    parts.append(head)
    counts = drift_counts(drift)
    parts.append(Text(", ".join(count(n, *_COUNTED[k]) for k, n in counts.items())))
    sections = (
        (
            "New failures",
            "bold yellow",
            [
                (f.host, f"{f.rule_id} ({f.severity.value}): {_st(f.before)} -> {_st(f.after)}")
                for f in drift.new_failures
            ],
        ),
        (
            "Resolved failures",
            "green",
            [(f.host, f"{f.rule_id}: {_st(f.before)} -> {_st(f.after)}") for f in drift.resolved_failures],
        ),
        ("Changed settings", "cyan", [(s.host, f"{s.field}: {s.before} -> {s.after}") for s in drift.changed_settings]),
        ("Newly unreachable", "bold red", [(h.host, h.reason) for h in drift.newly_unreachable]),
        ("Reachable again", "green", [(h.host, f"was {h.reason}") for h in drift.reachable_again]),
        ("Joined the inventory", "", [(name, "") for name in drift.joined]),
        ("Left the inventory", "dim", [(name, "") for name in drift.left]),
    )
    for title, style, items in sections:
        if not items:
            continue
        table = Table(
            box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title=title, title_justify="left", title_style=style
        )
        table.add_column("Host", overflow="fold", ratio=1)
        table.add_column("Change", overflow="fold", ratio=2)
        for host, change in items:
            table.add_row(safe_text(host, limit=100), safe_text(change, limit=400))
        parts.append(table)
    return Group(*parts)


def run(args: argparse.Namespace) -> int:
    """Print the drift between two scans (console, or JSON with the OCSF lifecycle events)."""
    with open_history(args) as store:
        drift, before, after = _pick(store, args)
    if args.format == "json":
        doc = {
            "drift": to_plain(drift),
            "events": [
                {
                    "host": e.host,
                    "rule_id": e.rule_id,
                    "finding_uid": e.finding_uid,
                    "activity_id": int(e.activity_id),
                    "severity": e.severity.value,
                    "before": e.before.value if e.before else None,
                    "after": e.after.value if e.after else None,
                }
                for e in drift_events(drift)
            ],
        }
        sys.stdout.write(json_text(json.dumps(doc, indent=2, ensure_ascii=False)) + "\n")
    else:
        print_renderable(render_drift(drift, before, after))
    return ExitCode.OK
