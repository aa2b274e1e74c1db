"""Render the report as JSON Lines: one flat finding object per line."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TextIO

from reports.findings import Finding, flatten, json_line, to_record
from reports.model import HostReport, ReportHeader


def line(finding: Finding) -> str:
    """Return one finding as a JSON line (no newline)."""
    return json_line(to_record(finding))


def render(header: ReportHeader, hosts: Iterable[HostReport], out: TextIO) -> None:
    """Write every finding of the report to `out`, one JSON object per line, host by host."""
    for finding in flatten(header, hosts):
        out.write(line(finding) + "\n")
