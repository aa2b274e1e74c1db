"""Render the report as JSON Lines: one flat finding object per line."""

from __future__ import annotations

from reports.findings import Finding, flatten, json_line, to_record
from reports.model import ScanReport


def line(finding: Finding) -> str:
    """Return one finding as a JSON line (no newline)."""
    return json_line(to_record(finding))


def render(report: ScanReport) -> str:
    """Return every finding of the report, one JSON object per line."""
    return "".join(line(f) + "\n" for f in flatten(report))
