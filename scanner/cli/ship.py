"""`natt-audit ship [--spool DIR] [--to DEST]...`: resend what the spool still holds."""

from __future__ import annotations

import argparse
import logging

from reports.export.ship import ship
from reports.export.spool import default_spool_dir
from scanner.cli.export import SPOOL_HELP, destinations
from scanner.cli.options import Subparsers
from scanner.core.errors import UsageError

log = logging.getLogger("natt_audit")


def register(subparsers: Subparsers) -> None:
    """Add `ship [--spool DIR] [--to DEST]...`."""
    parser = subparsers.add_parser("ship", help="resend findings still pending in the spool", description=run.__doc__)
    parser.add_argument("--spool", metavar="DIR", help=SPOOL_HELP)
    parser.add_argument(
        "--to",
        action="append",
        metavar="DEST",
        help="only these network destinations (default: every one in the spool); files are written by `export`",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resend every pending finding of the spool with its original event_uid."""
    chosen = destinations(args.to) if args.to else None
    files = [d.text for d in chosen or [] if not d.is_network]
    if files:
        raise UsageError(
            f"ship resends to network destinations; {files[0]} is a file: "
            "write files with `natt-audit export REPORT.json --to FILE`"
        )
    summary = ship(args.spool or default_spool_dir(), chosen)
    for line in summary.lines():
        log.info("%s", line)
    return summary.exit_code
