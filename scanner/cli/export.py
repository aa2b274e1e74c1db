"""`natt-audit export REPORT.json -f FORMAT [--to DEST]...`: a saved report in an export format."""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

from reports.export.destinations import Destination, parse_destination
from reports.export.ship import export_report
from reports.export.spool import default_spool_dir
from reports.formats import render
from reports.hosts import Report, parse_report
from scanner.cli.options import Subparsers
from scanner.core.bounded import InputFileError, read_bounded
from scanner.core.exitcodes import ExitCode
from scanner.core.formats import EXPORT_FORMATS, Format
from scanner.core.yamlfile import FileError

log = logging.getLogger("natt_audit")

REPORT_LIMIT = 512 * 1024 * 1024  # a JSON report of a very large estate, with room to spare

DEST_HELP = (
    "PATH | file:PATH | syslog+udp://HOST:PORT | syslog+tcp://HOST:PORT | "
    "syslog+tls://HOST:PORT[?ca=CAFILE] | hec+https://HOST:PORT[?token_file=PATH&ack=1&ca=CAFILE] "
    "(repeatable; the HEC token comes from NATT_AUDIT_HEC_TOKEN or token_file, never the command line)"
)
SPOOL_HELP = "spool folder (default $NATT_AUDIT_SPOOL or ~/.local/state)"


def register(subparsers: Subparsers) -> None:
    """Add `export REPORT.json -f FORMAT [--to DEST]...`."""
    parser = subparsers.add_parser(
        "export", help="render a JSON report for a SIEM and deliver it", description=run.__doc__
    )
    parser.add_argument("report", metavar="REPORT.json")
    parser.add_argument("-f", "--format", required=True, choices=[f.value for f in EXPORT_FORMATS])
    parser.add_argument("--to", action="append", metavar="DEST", help=DEST_HELP)
    parser.add_argument("--spool", metavar="DIR", help=SPOOL_HELP)
    parser.set_defaults(func=run)


def destinations(texts: list[str] | None) -> list[Destination]:
    """Parse every --to; DestinationError (exit 2) for the first unusable one."""
    return [parse_destination(text) for text in texts or []]


def load_report(path: str) -> Report:
    """Read a JSON report written by `scan -f json`; FileError (exit 2) when it is not one."""
    try:
        raw = read_bounded(path, REPORT_LIMIT)
    except InputFileError as exc:
        if exc.too_large:
            too_big = f"larger than {REPORT_LIMIT} bytes; not a natt-audit JSON report"
            raise FileError(path, None, None, too_big) from None
        raise FileError(path, None, None, f"cannot read it: {exc.reason}") from None
    try:
        return parse_report(raw)
    except (ValueError, ValidationError) as exc:
        raise FileError(path, None, None, f"not a natt-audit JSON report ({type(exc).__name__})") from None


def run(args: argparse.Namespace) -> int:
    """Render a saved JSON report in one format, to stdout or to each --to destination."""
    targets = destinations(args.to)
    report = load_report(args.report)
    if not targets:
        render(report.header, report.hosts, Format(args.format), sys.stdout, color=False)
        return int(ExitCode.OK)
    summary = export_report(
        report.header, report.hosts, targets, args.spool or default_spool_dir(), file_format=args.format
    )
    for line in summary.lines():
        log.info("%s", line)
    return summary.exit_code
