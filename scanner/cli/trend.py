"""`natt-audit trend`: compliance and coverage over time, as a terminal chart."""

from __future__ import annotations

import argparse

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from scanner.cli.options import Subparsers, add_db_options
from scanner.cli.output import compliance_of_row, open_history, pct, print_renderable, scans_of_inventory
from scanner.core.exitcodes import ExitCode
from scanner.core.sanitize import console_text as safe_text
from scanner.history.store import ScanRow, StoreError

BAR_WIDTH = 30


def register(subparsers: Subparsers) -> None:
    """Add `trend`."""
    parser = subparsers.add_parser("trend", help="compliance and coverage over time, as a terminal chart")
    add_db_options(parser)
    parser.add_argument("--limit", type=int, default=30, help="scans to chart (default 30)")
    parser.add_argument(
        "--inventory-id",
        metavar="ID",
        help="inventory id or file path, as `history` shows it (default: the newest scan's)",
    )
    parser.set_defaults(func=run)


def _bar(value: float | None, style: str) -> Text:
    """Return a bar and its percentage; an empty bar and n/a when there is nothing to measure."""
    filled = 0 if value is None else round(max(0.0, min(1.0, value)) * BAR_WIDTH)
    bar = Text("█" * filled, style=style)
    bar.append("·" * (BAR_WIDTH - filled), style="dim")
    bar.append(f" {pct(value):>6}")
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
        compliance = compliance_of_row(r)  # n/a, not 0%, when no host was read
        table.add_row(started, _bar(compliance, "green"), _bar(r.coverage, "cyan"), str(r.by_status.get("fail", 0)))
    note = Text("* interrupted scan", style="dim")
    return Group(table, note) if any(r.interrupted for r in rows) else table


def run(args: argparse.Namespace) -> int:
    """Chart the compliance and coverage of one inventory's recent scans."""
    with open_history(args) as store:
        inventory_id = args.inventory_id
        if inventory_id is None:
            latest = store.scans(limit=1)
            if not latest:
                raise StoreError("no scans recorded yet")
            inventory_id = latest[0].inventory_id
        rows = scans_of_inventory(store, inventory_id, max(1, args.limit))
    print_renderable(render_trend(rows))
    return ExitCode.OK
