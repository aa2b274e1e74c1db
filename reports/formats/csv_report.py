"""Render the report as CSV, one row per finding, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import TextIO

from reports.findings import Finding, flatten
from reports.model import HostReport, ReportHeader

# Stable column order: new columns are only ever appended.
COLUMNS: tuple[str, ...] = (
    "event_uid",
    "finding_uid",
    "scan_id",
    "time",
    "host",
    "address",
    "port",
    "rule_id",
    "rule_title",
    "rule_severity",
    "severity",
    "status",
    "message",
    "host_status",
    "os_version",
    "os_caption",
    "os_family",
    "registry_path",
    "data_type",
    "observed",
    "effective_mode",
    "integrity",
    "error_stage",
    "error_reason",
    "error_message",
    "tags",
)

# A cell starting with one of these is a formula to Excel/LibreOffice/Sheets (OWASP "CSV
# injection"): prefix it with an apostrophe so it is shown as text. LF is included because some
# importers trim leading whitespace and then see the next character.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")


def neutralise(cell: str) -> str:
    """Return `cell` with a leading `'` when a spreadsheet would read it as a formula."""
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


def _cell(value: object) -> str:
    if value is None:
        return ""
    if hasattr(value, "value"):  # Status/Severity
        return str(value.value)
    return str(value)


def row(finding: Finding) -> list[str]:
    """Return the neutralised cells of one finding, in COLUMNS order."""
    values: dict[str, object] = {
        name: getattr(finding, name) for name in COLUMNS if name not in ("observed", "tags")
    }
    values["observed"] = finding.observed
    values["tags"] = ";".join(f"{k}={v}" for k, v in finding.tags.items())
    return [neutralise(_cell(values[name])) for name in COLUMNS]


def render(header: ReportHeader, hosts: Iterable[HostReport], out: TextIO) -> None:
    """Write a header row and one row per finding to `out` (RFC 4180 quoting, LF line ends)."""
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(COLUMNS)
    for finding in flatten(header, hosts):
        writer.writerow(row(finding))
