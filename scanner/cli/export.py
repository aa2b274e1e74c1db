"""The `export` and `ship` subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from reports.export.destinations import Destination, DestinationError, parse_destination
from reports.export.ship import export_report, ship
from reports.export.spool import SpoolError, default_spool_dir
from reports.formats import render
from reports.hosts import Report, parse_report
from scanner.core.exitcodes import ExitCode
from scanner.core.formats import EXPORT_FORMATS, Format
from scanner.core.sanitize import one_line

REPORT_LIMIT = 512 * 1024 * 1024  # a JSON report of a very large estate, with room to spare


def _error(message: str) -> int:
    sys.stderr.write(f"natt-audit: error: {one_line(message, 1000)}\n")
    return int(ExitCode.USAGE)


def _destinations(texts: list[str] | None) -> list[Destination]:
    return [parse_destination(text) for text in texts or []]


def _load_report(path: str) -> Report:
    source = Path(path)
    if source.stat().st_size > REPORT_LIMIT:
        raise ValueError(f"{path} is larger than {REPORT_LIMIT} bytes")
    return parse_report(source.read_bytes())


def run_export(args: argparse.Namespace) -> int:
    """Render a saved JSON report in one format, to stdout or to each --to destination."""
    try:
        destinations = _destinations(args.to)
    except DestinationError as exc:
        return _error(str(exc))
    try:
        report = _load_report(args.report)
    except OSError as exc:
        return _error(f"cannot read {args.report}: {exc.strerror or exc}")
    except (ValueError, ValidationError) as exc:
        return _error(f"{args.report} is not a natt-audit JSON report ({type(exc).__name__})")
    if not destinations:
        render(report.header, report.hosts, Format(args.format), sys.stdout, color=False)
        return int(ExitCode.OK)
    try:
        summary = export_report(
            report.header, report.hosts, destinations, args.spool or default_spool_dir(), file_format=args.format
        )
    except SpoolError as exc:
        return _error(str(exc))
    sys.stderr.write("".join(line + "\n" for line in summary.lines()))
    return summary.exit_code


def run_ship(args: argparse.Namespace) -> int:
    """Resend every pending finding of the spool with its original event_uid."""
    try:
        destinations = _destinations(args.to) if args.to else None
        summary = ship(args.spool or default_spool_dir(), destinations)
    except (DestinationError, SpoolError) as exc:
        return _error(str(exc))
    sys.stderr.write("".join(line + "\n" for line in summary.lines()))
    return summary.exit_code


DEST_HELP = (
    "PATH | file:PATH | syslog+udp://HOST:PORT | syslog+tcp://HOST:PORT | "
    "syslog+tls://HOST:PORT[?ca=CAFILE] | hec+https://HOST:PORT[?token_file=PATH&ack=1&ca=CAFILE] "
    "(repeatable; the HEC token comes from NATT_AUDIT_HEC_TOKEN or token_file, never the command line)"
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `export REPORT.json -f FORMAT [--to DEST]...` and `ship [--spool DIR] [--to DEST]...`."""
    export = subparsers.add_parser(
        "export", help="render a JSON report for a SIEM and deliver it", description=run_export.__doc__
    )
    export.add_argument("report", metavar="REPORT.json")
    export.add_argument("-f", "--format", required=True, choices=[f.value for f in EXPORT_FORMATS])
    export.add_argument("--to", action="append", metavar="DEST", help=DEST_HELP)
    export.add_argument(
        "--spool", metavar="DIR", help="spool folder (default $NATT_AUDIT_SPOOL or ~/.local/state)"
    )
    export.set_defaults(func=run_export)
    shipper = subparsers.add_parser(
        "ship", help="resend findings still pending in the spool", description=run_ship.__doc__
    )
    shipper.add_argument(
        "--spool", metavar="DIR", help="spool folder (default $NATT_AUDIT_SPOOL or ~/.local/state)"
    )
    shipper.add_argument(
        "--to",
        action="append",
        metavar="DEST",
        help="only these destinations (default: every one in the spool)",
    )
    shipper.set_defaults(func=run_ship)
