"""`natt-audit history`: recent scans with coverage and counts, optionally the HTML report."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rich import box
from rich.table import Table
from rich.text import Text

from scanner.cli.options import Subparsers, add_db_options
from scanner.cli.output import (
    compliance_of_row,
    inventory_ids,
    open_history,
    pct,
    print_renderable,
    scans_of_inventory,
    shown_inventories,
)
from scanner.core.atomic import write_atomic
from scanner.core.errors import OutputError
from scanner.core.exitcodes import ExitCode
from scanner.core.sanitize import console_text as safe_text
from scanner.core.sanitize import json_text
from scanner.history.html import render_history_html

log = logging.getLogger("natt_audit")


def register(subparsers: Subparsers) -> None:
    """Add `history`."""
    parser = subparsers.add_parser("history", help="list recent scans with coverage and counts")
    add_db_options(parser)
    parser.add_argument("--limit", type=int, default=20, help="scans to list (default 20)")
    parser.add_argument(
        "--inventory-id",
        metavar="ID",
        help="only scans of this inventory: as the Inventory column shows it, its file's path, or its id",
    )
    parser.add_argument("-f", "--format", choices=["console", "json"], default="console")
    parser.add_argument("--html", metavar="FILE", help="also write the HTML history report with charts to FILE")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List recent scans (console table or JSON); write the HTML report when asked."""
    with open_history(args) as store:
        limit = max(1, args.limit)
        if args.inventory_id is None:
            rows = store.scans(limit=limit)
        else:
            rows = scans_of_inventory(store, args.inventory_id, limit)
        shown = shown_inventories(inventory_ids(store))
        if args.html:
            try:
                write_atomic(Path(args.html), render_history_html(store, rows).encode("utf-8"))
            except OSError as exc:
                raise OutputError(f"cannot write {args.html}: {exc.strerror or exc}") from None
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
            safe_text(shown[r.inventory_id], limit=300),
            str(r.hosts_total),
            pct(r.coverage),
            pct(compliance_of_row(r)),
            str(r.by_status.get("fail", 0)),
            str(r.by_status.get("error", 0)),
            Text("interrupted", style="red") if r.interrupted else Text("complete"),
        )
    print_renderable(table if rows else Text("No scans recorded yet."))
    if args.html:
        log.info("HTML history report written to %s", args.html)
    return ExitCode.OK
