"""Command line: `main(argv) -> int`; only `entry_point` exits the process."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn, cast

from scanner import __version__
from scanner.core.exitcodes import ExitCode
from scanner.core.formats import Format
from scanner.core.results import Severity

log = logging.getLogger("natt_audit")


class UsageError(Exception):
    """The command line or a configuration input is wrong; exit 2 with this message."""


class _ParserExit(Exception):
    """argparse wanted to exit (e.g. --help); carry the status back to main."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that reports errors as UsageError instead of exiting."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        # No abbreviations: `--passw SECRET` must never be taken for `--password-file SECRET`.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        # argparse echoes unrecognised arguments verbatim: `--token S3cret` or a mistyped
        # `--pasword S3cret` would print the secret. Show option names only (docs/reliability.md#unsafe-configuration).
        head, sep, rest = message.partition("unrecognized arguments: ")
        if sep:
            shown = [arg.split("=", 1)[0] if arg.startswith("-") else "..." for arg in rest.split(" ")]
            message = f"{head}{sep}{' '.join(shown)} (values not shown)"
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _ParserExit(status)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _duration(text: str) -> float:
    from scanner.inputs.config import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _nonnegative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def add_scan_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `scan`. Defaults are None: the config layering fills them (docs/config.md)."""
    parser.add_argument("--config", metavar="FILE", help="TOML config file (default $NATT_AUDIT_CONFIG)")
    parser.add_argument("-i", "--inventory", help="inventory file: YAML, CSV, or text")
    parser.add_argument(
        "-p",
        "--policy",
        action="append",
        default=None,
        metavar="POLICY",
        help="built-in policy name (baseline, strict) or policy file; repeatable; default: baseline",
    )
    parser.add_argument(
        "-f",
        "--format",
        choices=[f.value for f in Format],
        default=None,
        help="report format (default: console)",
    )
    parser.add_argument("-o", "--output", help="write the report to this file (atomically) instead of stdout")
    parser.add_argument("--concurrency", type=_positive_int, help="hosts in flight (default 64)")
    parser.add_argument(
        "--host-timeout",
        type=_positive_float,
        help="hard wall-clock deadline per host in seconds, trickling peers included (default 30)",
    )
    parser.add_argument("--connect-timeout", type=_positive_float, help="TCP connect timeout (default 5)")
    parser.add_argument(
        "--deadline",
        type=_duration,
        metavar="DURATION",
        help="limit for the whole run (90s, 45m, 2h); hosts not reached get error timeout/deadline",
    )
    parser.add_argument(
        "--grace",
        type=_nonnegative_float,
        metavar="SECONDS",
        help="after SIGTERM/SIGINT or the deadline, how long in-flight hosts may finish (default 10)",
    )
    parser.add_argument(
        "--fail-on",
        choices=[s.value for s in Severity],
        default=None,
        help="lowest severity of a failing result that makes the exit status 1 (default low)",
    )
    parser.add_argument(
        "--min-coverage",
        type=_fraction,
        help="fraction of hosts that must be read, else exit 3 (default 1.0)",
    )
    parser.add_argument(
        "--waivers",
        action="append",
        default=None,
        metavar="FILE",
        help="waivers file: justified, expiring exceptions; repeatable",
    )
    parser.add_argument(
        "--waiver-warn-days",
        type=_positive_int,
        help="list waivers that expire within this many days (default 14)",
    )
    parser.add_argument("--password-file", help="read the password from this file's first line")
    parser.add_argument("--ca-bundle", help="PEM file of CA certificates for HTTPS hosts")
    parser.add_argument(
        "--insecure-skip-tls-verify",
        action="store_const",
        const=True,
        default=None,
        help="do NOT verify HTTPS certificates (logged as a warning on every run)",
    )
    parser.add_argument("--color", choices=["auto", "always", "never"], default=None, help="console colours")
    parser.add_argument(
        "--db",
        metavar="PATH",
        help="history database (default $XDG_STATE_HOME/natt-audit/history.db)",
    )
    parser.add_argument(
        "--no-history",
        dest="history",
        action="store_const",
        const=False,
        default=None,
        help="do not record this scan, compute no drift, take no lock",
    )
    parser.add_argument(
        "--inventory-id",
        metavar="ID",
        help="stable id of the inventory for drift and resume (default: its resolved path)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted scan of this database, skipping finished hosts",
    )
    parser.add_argument(
        "--export",
        action="append",
        default=None,
        metavar="DEST",
        help="export destination carried in the configuration (see docs/config.md); repeatable",
    )
    parser.add_argument(
        "--log-format", choices=["plain", "json"], default=None, help="stderr log format (default plain)"
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the whole command tree."""
    from scanner.cli import export as export_cli
    from scanner.cli import history as history_cli
    from scanner.cli import policy as policy_cli
    from scanner.cli import remediate as remediate_cli
    from scanner.lab import cli as lab_cli

    parser = _Parser(prog="natt-audit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"natt-audit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    parser.add_argument(
        "--log-format",
        dest="global_log_format",
        choices=["plain", "json"],
        default=None,
        help="stderr log format for every command (default plain, or $NATT_AUDIT_LOG_FORMAT)",
    )
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True, parser_class=_Parser),
    )

    scan = sub.add_parser("scan", help="scan an inventory and report")
    add_scan_arguments(scan)

    demo = sub.add_parser("demo", help="start a simulated estate on loopback and scan it")
    demo.add_argument("--out", default="natt-audit-demo", help="folder for the JSON report (default ./natt-audit-demo)")
    demo.add_argument("--color", choices=["auto", "always", "never"], default="auto")

    schema = sub.add_parser("schema", help="print a JSON Schema")
    schema.add_argument("what", choices=["report", "policy", "waivers"])

    lab_cli.register(sub)
    policy_cli.register(sub)
    history_cli.register(sub)
    export_cli.register(sub)
    remediate_cli.register(sub)
    return parser


def _use_color(choice: str) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return sys.stdout.isatty()


def _schema(what: str) -> int:
    if what == "report":
        from reports.schema import report_json_schema

        doc = report_json_schema()
    elif what == "policy":
        from rules.loader import policy_json_schema

        doc = policy_json_schema()
    else:
        from rules.waivers import waivers_json_schema

        doc = waivers_json_schema()
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return ExitCode.OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run natt-audit with `argv` and return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    from scanner.core.logsetup import inert_lines, setup_logging

    try:
        from scanner.inputs.credentials import CredentialError, reject_secret_arguments

        reject_secret_arguments(args_list)
        parser = build_parser()
        args = parser.parse_args(args_list)
    except _ParserExit as exc:
        return exc.status
    except (UsageError, CredentialError) as exc:
        sys.stderr.write(f"natt-audit: error: {inert_lines(str(exc))}\n")
        return ExitCode.USAGE
    fmt = args.global_log_format or getattr(args, "log_format", None) or os.environ.get("NATT_AUDIT_LOG_FORMAT")
    setup_logging(verbose=args.verbose, fmt="json" if fmt == "json" else "plain")
    if args.global_log_format and getattr(args, "log_format", None) is None:
        args.log_format = args.global_log_format
    try:
        if args.command in ("history", "diff", "trend", "config"):
            from scanner.cli import history as history_cli

            return history_cli.run(args)
        if args.command == "scan":
            from scanner.cli.scan import run_scan_command

            return run_scan_command(args)
        if args.command == "demo":
            from scanner.cli.demo import run_demo

            return run_demo(out=args.out, color=_use_color(args.color))
        if args.command == "schema":
            return _schema(args.what)
        if args.command == "lab":
            from scanner.lab import cli as lab_cli

            return lab_cli.run(args)
        if args.command == "policy":
            from scanner.cli import policy as policy_cli

            return policy_cli.run(args)
        if args.command in ("export", "ship", "remediate"):
            return int(args.func(args))
    except UsageError as exc:
        sys.stderr.write(f"natt-audit: error: {inert_lines(str(exc))}\n")
        return ExitCode.USAGE
    except KeyboardInterrupt:
        sys.stderr.write("natt-audit: interrupted\n")
        return ExitCode.INTERRUPTED
    raise UsageError(f"unknown command {args.command!r}")  # unreachable: argparse restricts choices


def entry_point() -> None:
    """Console-script entry: the one place that exits."""
    sys.exit(main())
