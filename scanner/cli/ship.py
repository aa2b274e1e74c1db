"""`natt-audit ship [--spool DIR] [--to DEST]...`: resend what the spool still holds."""

from __future__ import annotations

import argparse
import logging

from reports.export.ship import ship
from reports.export.spool import default_spool_dir
from scanner.cli.export import SPOOL_HELP, destinations
from scanner.cli.options import Subparsers

log = logging.getLogger("natt_audit")


def register(subparsers: Subparsers) -> None:
    """Add `ship [--spool DIR] [--to DEST]...`."""
    parser = subparsers.add_parser("ship", help="resend findings still pending in the spool", description=run.__doc__)
    parser.add_argument("--spool", metavar="DIR", help=SPOOL_HELP)
    parser.add_argument(
        "--to", action="append", metavar="DEST", help="only these destinations (default: every one in the spool)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resend every pending finding of the spool with its original event_uid."""
    summary = ship(args.spool or default_spool_dir(), destinations(args.to) if args.to else None)
    for line in summary.lines():
        log.info("%s", line)
    return summary.exit_code
