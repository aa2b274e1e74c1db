"""Render the report as CSV, one row per finding, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import TextIO

from reports.findings import Finding, flatten
from reports.model import HostReport, ReportHeader
from scanner.core.sanitize import FORMULA_PREFIXES as FORMULA_PREFIXES
from scanner.core.sanitize import csv_cell
from scanner.core.sanitize import neutralise as neutralise

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

def _cell(value: object) -> str:
    if value is None:
        return ""
    if hasattr(value, "value"):  # Status/Severity
        return str(value.value)
    return str(value)


def row(finding: Finding) -> list[str]:
    """Return the cells of one finding in COLUMNS order: unsafe characters escaped, formulas neutralised."""
    values: dict[str, object] = {
        name: getattr(finding, name) for name in COLUMNS if name not in ("observed", "tags")
    }
    values["observed"] = finding.observed
    values["tags"] = ";".join(f"{k}={v}" for k, v in finding.tags.items())
    return [csv_cell(_cell(values[name])) for name in COLUMNS]


def render(header: ReportHeader, hosts: Iterable[HostReport], out: TextIO) -> None:
    """Write a header row and one row per finding to `out` (RFC 4180 quoting, LF line ends)."""
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(COLUMNS)
    for finding in flatten(header, hosts):
        writer.writerow(row(finding))
