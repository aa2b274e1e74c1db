"""Read a JSON report for planning: bounded, schema version checked first, then fully validated.

A report handed to `remediate` is untrusted input (it may be old, edited or hostile): it is read
up to a size limit, its `schema_version` must be one this natt-audit writes, and it must validate
as a whole against the report model (reports/hosts.py: `parse_report`, the public loader) before
a single host is planned.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from reports.hosts import Report, parse_report
from reports.model import SCHEMA_VERSION
from scanner.core.errors import NattError

MAX_REPORT_BYTES = 512 * 1024 * 1024  # a JSON report of a very large estate, with room to spare
KNOWN_SCHEMA_VERSIONS = frozenset({SCHEMA_VERSION})


class ReportError(NattError):
    """A report that cannot be planned from: unreadable, too large, unknown version or invalid (exit 2)."""


class _Head(BaseModel):
    """Just the version, read before anything else so a newer format is named as such."""

    model_config = ConfigDict(extra="ignore")
    schema_version: object = None


def read_bounded(path: str | Path, limit: int = MAX_REPORT_BYTES) -> bytes:
    """Return the file's bytes, refusing it unread when it is larger than `limit`."""
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ReportError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ReportError(f"{path} is larger than {limit} bytes")
    return data


def load_report(path: str | Path, limit: int = MAX_REPORT_BYTES) -> Report:
    """Return the validated report at `path` (header and hosts); raise ReportError when it cannot be used."""
    raw = read_bounded(path, limit)
    try:
        version = _Head.model_validate_json(raw).schema_version
    except ValidationError as exc:
        raise ReportError(f"{path} is not a JSON report ({exc.error_count()} problems)") from None
    if not isinstance(version, str) or version not in KNOWN_SCHEMA_VERSIONS:
        shown = ascii(version)[:40]
        known = ", ".join(sorted(KNOWN_SCHEMA_VERSIONS))
        raise ReportError(f"{path}: unknown report schema_version {shown}; this natt-audit reads {known}")
    try:
        return parse_report(raw)
    except ValidationError as exc:
        raise ReportError(f"{path} is not a valid natt-audit report ({exc.error_count()} problems)") from None
