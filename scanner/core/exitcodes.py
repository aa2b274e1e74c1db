"""The one catalogue of exit codes; the README documents it."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit statuses a scheduler can act on; precedence 130 > 2 > 4 > 5 > 3 > 1 > 0."""

    OK = 0  # compliant: every host read, no failing result at or above --fail-on
    FINDINGS = 1  # at least one `fail` at or above --fail-on
    USAGE = 2  # usage or configuration error (bad flags, inventory, policy, credentials source)
    INCOMPLETE = 3  # coverage below --min-coverage: some hosts could not be read
    LOCKED = 4  # another scan holds the history database's lock: nothing was scanned (docs/scheduling.md)
    UNDELIVERED = 5  # an export destination did not take every finding; they stay spooled for `ship`
    INTERRUPTED = 130  # SIGINT/SIGTERM: a partial report was written and marked interrupted


def combine(*codes: ExitCode) -> ExitCode:
    """Return the code that wins by the documented precedence."""
    order = [
        ExitCode.INTERRUPTED,
        ExitCode.USAGE,
        ExitCode.LOCKED,
        ExitCode.UNDELIVERED,
        ExitCode.INCOMPLETE,
        ExitCode.FINDINGS,
        ExitCode.OK,
    ]
    for code in order:
        if code in codes:
            return code
    return ExitCode.OK
