"""Logging to stderr: the one path for errors, warnings, summaries and `-v` detail.

Everything natt-audit says on stderr (except the progress bar and argparse's --help) is a record
of the `natt_audit` logger, set up once by `setup_logging`:

- plain: one prefix per line, `natt-audit: error: ...`, `natt-audit: warning: ...`,
  `natt-audit: debug: ...`, and `natt-audit: ...` for information (the scan summary);
- json: one object per record, `ts`, `level`, `msg`, `fields` (docs/config.md, `log_format`).

Every line is made inert (scanner/core/sanitize.py): host-supplied text can neither split a
record nor forge one. A record keeps its own line breaks only when logged with
`extra=multiline_fields(...)`: error messages list one problem per line, and each of those
lines then gets its own prefix.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

from scanner.core.sanitize import json_text, one_line

LOGGER = "natt_audit"
PREFIX = "natt-audit: "
LINE_LIMIT = 4000  # characters per stderr line; a longer one is cut with an ellipsis

LogFormat = Literal["plain", "json"]

_LABELS = {
    logging.DEBUG: "debug: ",
    logging.INFO: "",
    logging.WARNING: "warning: ",
    logging.ERROR: "error: ",
    logging.CRITICAL: "error: ",
}


def fields(**values: object) -> dict[str, object]:
    """Return the `extra` of a record with structured fields (shown by the JSON format)."""
    return {"fields": values}


def multiline_fields(**values: object) -> dict[str, object]:
    """Return the `extra` of a record whose own line breaks are kept, one prefix per line."""
    return {"fields": values, "multiline": True}


class PlainFormatter(logging.Formatter):
    """`natt-audit: LEVEL: message`, one prefix on every line, every line inert."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        label = _LABELS.get(record.levelno, f"{record.levelname.lower()}: ")
        lines = message.split("\n") if getattr(record, "multiline", False) else [message]
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: a traceback or an exception's text can hold request data.
            lines[-1] += f" ({record.exc_info[0].__name__})"
        return "\n".join(f"{PREFIX}{label}{one_line(line, limit=LINE_LIMIT)}" for line in lines)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, msg, fields. json.dumps escapes every control."""

    def format(self, record: logging.LogRecord) -> str:
        extra = getattr(record, "fields", None)
        values: dict[str, object] = dict(extra) if isinstance(extra, dict) else {}
        if record.exc_info and record.exc_info[0] is not None:
            values["exception"] = record.exc_info[0].__name__
        doc: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            "fields": values,
        }
        if record.exc_info and record.exc_info[0] is not None:
            doc["fields"] = {**doc["fields"], "exception": record.exc_info[0].__name__}  # type: ignore[dict-item]
        # ensure_ascii already writes every character outside printable ASCII as \uXXXX; json_text
        # states the JSON rule of scanner/core/sanitize.py here too, whatever the dumps options.
        return json_text(json.dumps(doc, ensure_ascii=True, default=str, separators=(",", ":")))


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Write to the `sys.stderr` of the moment, so a replaced stderr (tests, capture) is honoured."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # emit runs under the handler's lock
        super().emit(record)


def _handler() -> _StderrHandler:
    logger = logging.getLogger(LOGGER)
    for handler in logger.handlers:
        if isinstance(handler, _StderrHandler):
            return handler
    logger.handlers.clear()
    handler = _StderrHandler()
    logger.addHandler(handler)
    logger.propagate = False
    return handler


def setup_logging(*, verbose: bool = False, fmt: LogFormat = "plain") -> None:
    """Send natt-audit's records to stderr in `fmt`; debug detail only with --verbose."""
    set_format(fmt)
    logging.getLogger(LOGGER).setLevel(logging.DEBUG if verbose else logging.INFO)


def set_format(fmt: LogFormat) -> None:
    """Switch the stderr format (a config file may choose json after the flags were read)."""
    _handler().setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())


def inert_lines(message: str) -> str:
    """Escape controls, bidi and invisible characters on each line of a multi-line message.

    Messages quote inputs (inventory lines, policy keys, a server's reply): each line is made
    inert, and the line breaks the message itself uses (one problem per line) are kept.
    """
    return "\n".join(one_line(line, limit=LINE_LIMIT) for line in message.split("\n"))
