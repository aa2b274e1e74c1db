"""`natt-audit history`, `diff`, `trend` and `config show`: answers from the scan history."""

from __future__ import annotations

import argparse
import json
import os
import sys
from io import StringIO
from pathlib import Path

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from reports.formats.json_report import to_plain
from reports.hosts import Report
from reports.lifecycle import drift_events
from reports.model import Drift, ReportHeader
from scanner.core.atomic import write_atomic
from scanner.core.exitcodes import ExitCode
from scanner.core.logsetup import say
from scanner.core.results import Status
from scanner.core.sanitize import console_text as safe_text
from scanner.core.sanitize import json_text
from scanner.history.drift import compute_drift, drift_counts
from scanner.history.store import ScanRow, SqliteStore, StoreError
from scanner.inputs.config import ConfigError, database_path, load_config, show_config

WIDTH = 120
BAR_WIDTH = 30


def _db_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="PATH", help="history database (default: config, then XDG state)")
    parser.add_argument("--config", metavar="FILE", help="TOML config file (default $NATT_AUDIT_CONFIG)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the history, diff, trend and config commands."""
    history = sub.add_parser("history", help="list recent scans with coverage and counts")
    _db_options(history)
    history.add_argument("--limit", type=int, default=20, help="scans to list (default 20)")
    history.add_argument("--inventory-id", metavar="ID", help="only scans of this inventory id")
    history.add_argument("-f", "--format", choices=["console", "json"], default="console")
    history.add_argument("--html", metavar="FILE", help="also write the HTML history report with charts to FILE")

    diff = sub.add_parser(
        "diff",
        help="drift between two scans (default: the last scan and the one before it)",
        description="With no scan: the newest scan against the previous complete scan of its "
        "inventory. With one: that scan against its predecessor. With two: SCAN_A -> SCAN_B. "
        "A scan is named by its id or a unique prefix of it.",
    )
    _db_options(diff)
    diff.add_argument("scan_a", nargs="?", metavar="SCAN_A")
    diff.add_argument("scan_b", nargs="?", metavar="SCAN_B")
    diff.add_argument("-f", "--format", choices=["console", "json"], default="console")

    trend = sub.add_parser("trend", help="compliance and coverage over time, as a terminal chart")
    _db_options(trend)
    trend.add_argument("--limit", type=int, default=30, help="scans to chart (default 30)")
    trend.add_argument("--inventory-id", metavar="ID", help="inventory id (default: the newest scan's)")

    config = sub.add_parser("config", help="show the effective configuration")
    actions = config.add_subparsers(dest="config_command", required=True)
    show = actions.add_parser("show", help="print the effective configuration, secrets redacted")
    show.add_argument("--config", metavar="FILE", help="TOML config file (default $NATT_AUDIT_CONFIG)")
    show.add_argument("--db", metavar="PATH", help="history database, as `scan --db` would take it")


def _console(color: bool = False) -> tuple[Console, StringIO]:
    buffer = StringIO()
    console = Console(
        file=buffer,
        width=WIDTH,
        color_system="standard" if color else None,
        force_terminal=color,
        no_color=not color,
        markup=False,
        emoji=False,
        highlight=False,
        _environ={},
    )
    return console, buffer


def _print(renderable: RenderableType) -> None:
    console, buffer = _console()
    console.print(renderable)
    sys.stdout.write("\n".join(line.rstrip() for line in buffer.getvalue().split("\n")))
    sys.stdout.flush()


def _open(args: argparse.Namespace) -> SqliteStore:
    loaded = load_config(path=args.config, environ=os.environ, args=args)
    path = database_path(loaded.config)
    if not Path(path).exists():
        raise StoreError(f"no history database at {path}; run `natt-audit scan` first (or give --db)")
    return SqliteStore(path)


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _history(args: argparse.Namespace) -> int:
    with _open(args) as store:
        rows = store.scans(inventory_id=args.inventory_id, limit=max(1, args.limit))
        if args.html:
            from scanner.history.html import render_history_html

            write_atomic(Path(args.html), render_history_html(store, rows).encode("utf-8"))
    if args.format == "json":
        doc = [
            {
                "id": r.id,
                "inventory_id": r.inventory_id,
                "inventory": r.inventory,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "interrupted": r.interrupted,
                "hosts_total": r.hosts_total,
                "coverage": r.coverage,
                "compliance": r.compliance,
                "hosts_by_status": dict(r.by_status),
                "requests_total": r.requests_total,
                "policies": list(r.policies),
            }
            for r in rows
        ]
        sys.stdout.write(json_text(json.dumps(doc, indent=2, ensure_ascii=False)) + "\n")
        return ExitCode.OK
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("Scan", "Started", "Inventory", "Hosts", "Coverage", "Compliant", "Fail", "Error", "State"):
        table.add_column(name, no_wrap=name != "Inventory", overflow="fold")
    for r in rows:
        table.add_row(
            safe_text(r.id[:8]),
            safe_text(r.started_at),
            safe_text(Path(r.inventory).name if r.inventory else r.inventory_id, limit=40),
            str(r.hosts_total),
            _pct(r.coverage),
            _pct(r.compliance),
            str(r.by_status.get("fail", 0)),
            str(r.by_status.get("error", 0)),
            Text("interrupted", style="red") if r.interrupted else Text("complete"),
        )
    _print(table if rows else Text("No scans recorded yet."))
    if args.html:
        say(f"natt-audit: HTML history report written to {args.html}")
    return ExitCode.OK


def _pick(store: SqliteStore, args: argparse.Namespace) -> tuple[Report, Report]:
    if args.scan_b is not None:
        before = store.load_report(store.find_scan(args.scan_a).id)
        after = store.load_report(store.find_scan(args.scan_b).id)
        return before, after
    if args.scan_a is not None:
        row = store.find_scan(args.scan_a)
    else:
        latest = store.scans(limit=1)
        if not latest:
            raise StoreError("no scans recorded yet")
        row = latest[0]
    previous = store.previous_report(row.inventory_id, before=row.id)
    if previous is None:
        raise StoreError(f"scan {row.id} has no earlier complete scan of the same inventory to compare with")
    return previous, store.load_report(row.id)


def _st(status: Status | None) -> str:
    """Show a finding state; None means the host or rule was not in that scan."""
    return "(not scanned)" if status is None else status.value


def render_drift(drift: Drift, before: ReportHeader, after: ReportHeader) -> RenderableType:
    """Return a terminal rendering of a drift; all host text made inert."""
    parts: list[RenderableType] = []
    head = Text("Drift ", style="bold")
    head.append_text(safe_text(f"{before.scan.id[:8]} ({before.scan.started_at})"))
    head.append(" → ")
    head.append_text(safe_text(f"{after.scan.id[:8]} ({after.scan.started_at})"))
    parts.append(head)
    counts = drift_counts(drift)
    parts.append(Text(", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items())))
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


def _diff(args: argparse.Namespace) -> int:
    with _open(args) as store:
        before, after = _pick(store, args)
    drift = compute_drift(before, after)
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
        _print(render_drift(drift, before.header, after.header))
    return ExitCode.OK


def _bar(value: float, style: str) -> Text:
    filled = round(max(0.0, min(1.0, value)) * BAR_WIDTH)
    bar = Text("█" * filled, style=style)
    bar.append("·" * (BAR_WIDTH - filled), style="dim")
    bar.append(f" {_pct(value):>6}")
    return bar


def render_trend(rows: list[ScanRow]) -> RenderableType:
    """Return the trend chart: one row per scan, oldest first, compliance and coverage bars."""
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        title="Compliance and coverage over time",
        title_justify="left",
    )
    table.add_column("Started", no_wrap=True)
    table.add_column("Compliant (of read hosts)", no_wrap=True)
    table.add_column("Coverage (read / all)", no_wrap=True)
    table.add_column("Fail", justify="right")
    for r in reversed(rows):
        started = safe_text(r.started_at)
        if r.interrupted:
            started.append(" *", style="red")
        table.add_row(started, _bar(r.compliance, "green"), _bar(r.coverage, "cyan"), str(r.by_status.get("fail", 0)))
    note = Text("* interrupted scan", style="dim")
    return Group(table, note) if any(r.interrupted for r in rows) else table


def _trend(args: argparse.Namespace) -> int:
    with _open(args) as store:
        inventory_id = args.inventory_id
        if inventory_id is None:
            latest = store.scans(limit=1)
            if not latest:
                raise StoreError("no scans recorded yet")
            inventory_id = latest[0].inventory_id
        rows = store.scans(inventory_id=inventory_id, limit=max(1, args.limit))
    _print(render_trend(rows))
    return ExitCode.OK


def _config_show(args: argparse.Namespace) -> int:
    loaded = load_config(path=args.config, environ=os.environ, args=args)
    sys.stdout.write(show_config(loaded, os.environ))
    return ExitCode.OK


def run(args: argparse.Namespace) -> int:
    """Run one of the history commands; errors become exit 2 with a message."""
    try:
        if args.command == "history":
            return _history(args)
        if args.command == "diff":
            return _diff(args)
        if args.command == "trend":
            return _trend(args)
        return _config_show(args)
    except (ConfigError, StoreError) as exc:
        say(f"natt-audit: error: {exc}")
        return ExitCode.USAGE
    except OSError as exc:
        say(f"natt-audit: error: {exc.strerror or exc}")
        return ExitCode.USAGE
