"""Logging to stderr: one inert line per message, as plain text or as one JSON object."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

from scanner.core.sanitize import json_text, one_line

LogFormat = Literal["plain", "json"]
_current: LogFormat = "plain"


class _OneLineFormatter(logging.Formatter):
    """Format records so host-supplied text can never split or forge a log line."""

    def format(self, record: logging.LogRecord) -> str:
        return one_line(super().format(record), limit=4000)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, msg, fields. json.dumps escapes every control."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        doc: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            "fields": dict(fields) if isinstance(fields, dict) else {},
        }
        if record.exc_info and record.exc_info[0] is not None:
            doc["fields"] = {**doc["fields"], "exception": record.exc_info[0].__name__}  # type: ignore[dict-item]
        # ensure_ascii already writes every character outside printable ASCII as \uXXXX; json_text
        # states the JSON rule of scanner/core/sanitize.py here too, whatever the dumps options.
        return json_text(json.dumps(doc, ensure_ascii=True, default=str, separators=(",", ":")))


def setup_logging(*, verbose: bool = False, fmt: LogFormat = "plain") -> None:
    """Send natt-audit's logs to stderr; debug detail only with --verbose."""
    global _current
    _current = fmt
    root = logging.getLogger("natt_audit")
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_OneLineFormatter("natt-audit: %(levelname)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def log_format() -> LogFormat:
    """Return the format chosen by the last setup_logging call."""
    return _current


def inert_lines(message: str) -> str:
    """Escape controls, bidi and invisible characters on each line of a multi-line message.

    Error messages quote inputs (inventory lines, policy keys, a server's reply): each line is made
    inert, and the line breaks the message itself uses (one problem per line) are kept.
    """
    return "\n".join(one_line(line, limit=4000) for line in message.split("\n"))


def say(message: str, *, level: int = logging.INFO, **fields: object) -> None:
    """Write a user-facing stderr line: as is in plain format, as a JSON log record in json format."""
    if _current == "json":
        logging.getLogger("natt_audit").log(level, "%s", message, extra={"fields": fields})
    else:
        sys.stderr.write(inert_lines(message) + "\n")  # the plain format keeps the historic stderr text
        sys.stderr.flush()
