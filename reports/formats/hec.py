"""Render findings as Splunk HTTP Event Collector events with CIM-named fields."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TextIO

from reports.findings import Finding, JsonValue, flatten, json_line
from reports.model import HostReport, ReportHeader
from scanner.core.results import Status

SOURCE = "natt-audit"
SOURCETYPE = "natt:audit:finding"
RESULT: dict[Status, str] = {
    Status.PASS: "passed",
    Status.FAIL: "failed",
    Status.ERROR: "error",
    Status.NOT_APPLICABLE: "not_applicable",
    Status.WAIVED: "waived",
}


def event(finding: Finding, *, index: str | None = None) -> dict[str, JsonValue]:
    """Return the HEC event object of one finding (`event.event_id` = event_uid)."""
    body: dict[str, JsonValue] = {
        "event_id": finding.event_uid,
        "finding_uid": finding.finding_uid,
        "scan_id": finding.scan_id,
        "dest": finding.host,
        "dest_ip": finding.address_ip,
        "dest_port": finding.port,
        "signature_id": finding.rule_id,
        "signature": finding.rule_title,
        "severity": finding.severity.value,
        "rule_severity": finding.rule_severity.value,
        "category": "compliance",
        "vendor_product": finding.tool_name,
        "status": finding.status.value,
        "result": RESULT[finding.status],
        "message": finding.message,
        "object_path": finding.registry_path,
        "registry_type": finding.data_type,
        "observed": finding.observed,
        "effective_mode": finding.effective_mode,
        "integrity": finding.integrity,
        "os": finding.os_caption,
        "os_version": finding.os_version,
        "host_status": finding.host_status.value,
        "policies": list(finding.policies),
        "tags": dict(finding.tags),
    }
    if finding.error_stage is not None:
        body["error_stage"] = finding.error_stage
        body["error_reason"] = finding.error_reason
        body["error_message"] = finding.error_message
    record: dict[str, JsonValue] = {
        "time": round(finding.time_ms / 1000, 3),
        "host": finding.host,
        "source": SOURCE,
        "sourcetype": SOURCETYPE,
    }
    if index is not None:
        record["index"] = index
    record["event"] = body
    record["fields"] = {"event_id": finding.event_uid, "signature_id": finding.rule_id}
    return record


def line(finding: Finding, *, index: str | None = None) -> str:
    """Return one HEC event as a JSON line (no newline)."""
    return json_line(event(finding, index=index))


def render(header: ReportHeader, hosts: Iterable[HostReport], out: TextIO) -> None:
    """Write one HEC event per line to `out`: the body of a POST to /services/collector/event."""
    for finding in flatten(header, hosts):
        out.write(line(finding) + "\n")
