"""The one application error base: every error a user must act on carries its exit code.

`scanner.cli.main.main` catches `NattError` once, logs its message (made inert, one
`natt-audit: error:` prefix per line) and returns `exit_code`; nothing else turns errors into
exit statuses. The codes are the catalogue in scanner/core/exitcodes.py (README "Exit codes").

Not application errors, on purpose: `scanner.collect.wsman.errors.CollectError` (one host's
classified failure, always turned into that host's `error` result, never an exit status of its
own) and `reports.export.syslog.SyslogError` (one destination's delivery failure, always turned
into that destination's pending count). Neither may ever reach `main`.
"""

from __future__ import annotations

from scanner.core.exitcodes import ExitCode


class NattError(Exception):
    """An error the user must act on; str() is the message, `exit_code` what the process returns."""

    exit_code: ExitCode = ExitCode.USAGE


class UsageError(NattError):
    """The command line is wrong (an unknown option, a bad value, a missing argument)."""


class OutputError(NattError):
    """A file natt-audit was asked to write (a report, an HTML page) cannot be written."""
