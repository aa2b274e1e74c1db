"""Logging to stderr, with every message made one inert line."""

from __future__ import annotations

import logging
import sys

from scanner.textsafe import one_line


class _OneLineFormatter(logging.Formatter):
    """Format records so host-supplied text can never split or forge a log line."""

    def format(self, record: logging.LogRecord) -> str:
        return one_line(super().format(record), limit=4000)


def setup_logging(*, verbose: bool = False) -> None:
    """Send natt-audit's logs to stderr; debug detail only with --verbose."""
    root = logging.getLogger("natt_audit")
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter("natt-audit: %(levelname)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
