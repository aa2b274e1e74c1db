"""Command line: `main(argv) -> int`; only `entry_point` exits the process.

Every command is a module here with `register(subparsers)` (which sets `func`) and
`run(args) -> int`. Errors are `NattError`s, caught once in `main`, logged through the
`natt_audit` logger (scanner/core/logsetup.py) and returned as their exit code.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, cast

from scanner import __version__
from scanner.cli import (
    config,
    demo,
    diff,
    export,
    history,
    inventory,
    lab,
    policy,
    remediate,
    scan,
    schema,
    ship,
    trend,
    worker,
    workers,
)
from scanner.cli.options import Subparsers, add_global_options, flag, global_defaults
from scanner.core.errors import NattError, UsageError
from scanner.core.exitcodes import ExitCode
from scanner.core.logsetup import LogFormat, fields, multiline_fields, setup_logging
from scanner.inputs.credentials import reject_secret_arguments

log = logging.getLogger("natt_audit")

# The order of `natt-audit --help`.
COMMANDS = (
    scan,
    inventory,
    worker,
    workers,
    demo,
    lab,
    policy,
    export,
    ship,
    remediate,
    schema,
    history,
    diff,
    trend,
    config,
)


class _ParserExit(Exception):
    """argparse wanted to exit (--help, --version); carry the status back to main."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that raises UsageError instead of exiting, with the global options on every level."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations: `--passw SECRET` must never be taken for `--password-file SECRET`.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        add_global_options(self)

    def error(self, message: str) -> NoReturn:
        # argparse echoes unrecognised arguments verbatim: `--token S3cret` or a mistyped
        # `--pasword S3cret` would print the secret. Show option names only.
        head, sep, rest = message.partition("unrecognized arguments: ")
        if sep:
            shown = [arg.split("=", 1)[0] if arg.startswith("-") else "..." for arg in rest.split(" ")]
            message = f"{head}{sep}{' '.join(shown)} (values not shown)"
        command = self.prog.removeprefix("natt-audit").strip()
        raise UsageError(f"{command}: {message}" if command else message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            log.error("%s", message.strip())
        raise _ParserExit(status)


class _EarlyParser(argparse.ArgumentParser):
    """Reads only the global options, wherever they stand, before the real parse."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """Build the whole command tree."""
    parser = _Parser(prog="natt-audit", description="Audit the Windows IPsec NAT-T setting over WinRM/WMI.")
    parser.add_argument("--version", action="version", version=f"natt-audit {__version__}")
    parser.set_defaults(**global_defaults())
    sub = cast(Subparsers, parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
    for command in COMMANDS:
        command.register(sub)
    return parser


def _log_format(args: argparse.Namespace) -> LogFormat:
    chosen = flag(args, "log_format") or os.environ.get("NATT_AUDIT_LOG_FORMAT")
    return "json" if chosen == "json" else "plain"


def _early_logging(argv: list[str]) -> None:
    """Set up logging from the global options before parsing, so a usage error is logged as asked."""
    early = _EarlyParser(add_help=False, allow_abbrev=False)
    add_global_options(early)
    early.set_defaults(**global_defaults())
    try:
        args, _ = early.parse_known_args(argv)
    except UsageError:
        args = early.parse_known_args([])[0]  # the real parse reports the problem
    setup_logging(verbose=bool(args.verbose), fmt=_log_format(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Run natt-audit with `argv` and return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    _early_logging(args_list)
    try:
        reject_secret_arguments(args_list)
        args = build_parser().parse_args(args_list)
        setup_logging(verbose=bool(args.verbose), fmt=_log_format(args))
        return int(args.func(args))
    except _ParserExit as exc:
        return exc.status
    except NattError as exc:
        log.error("%s", exc, extra=multiline_fields(error=type(exc).__name__, exit_code=int(exc.exit_code)))
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted", extra=fields(exit_code=int(ExitCode.INTERRUPTED)))
        return ExitCode.INTERRUPTED


def entry_point() -> None:
    """Console-script entry: the one place that exits."""
    sys.exit(main())
