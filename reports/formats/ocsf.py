"""Render findings as OCSF 1.8.0 Compliance Finding events (class 2003), one JSON event per line."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TextIO

from reports.findings import Finding, JsonValue, flatten, json_line
from reports.model import HostReport, ReportHeader
from scanner.core.results import Severity, Status

OCSF_VERSION = "1.8.0"
CLASS_UID = 2003
CATEGORY_UID = 2  # Findings

SEVERITY_ID: dict[Severity, int] = {
    Severity.INFO: 1,
    Severity.LOW: 2,
    Severity.MEDIUM: 3,
    Severity.HIGH: 4,
    Severity.CRITICAL: 5,
}
_SEVERITY_NAME = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}

# compliance.status_id: 1 Pass, 2 Warning, 3 Fail, 99 Other (with `status` naming it).
COMPLIANCE_STATUS: dict[Status, tuple[int, str]] = {
    Status.PASS: (1, "Pass"),
    Status.WAIVED: (2, "Warning"),
    Status.FAIL: (3, "Fail"),
    Status.ERROR: (99, "Error"),
    Status.NOT_APPLICABLE: (99, "Not Applicable"),
}
# Finding workflow state (status_id, not pass/fail): open findings are New, waived ones
# Suppressed, passing/not-applicable ones Resolved. The renderer is pure and sees one night, so a
# passing check is sent as activity Close (3) of its finding_info.uid; everything else as Create (1).
WORKFLOW: dict[Status, tuple[int, str, int, str]] = {
    Status.FAIL: (1, "New", 1, "Create"),
    Status.ERROR: (1, "New", 1, "Create"),
    Status.WAIVED: (3, "Suppressed", 1, "Create"),
    Status.PASS: (4, "Resolved", 3, "Close"),
    Status.NOT_APPLICABLE: (4, "Resolved", 3, "Close"),
}
ACTIVITY_NAME = {1: "Create", 2: "Update", 3: "Close"}
OS_TYPE_WINDOWS = 100
DEVICE_TYPE_UNKNOWN = 0  # server or desktop is not known from what is read
ANALYTIC_RULE = 1


def event(finding: Finding) -> dict[str, JsonValue]:
    """Return the OCSF Compliance Finding event of one finding."""
    status_id, status_name, activity_id, activity_name = WORKFLOW[finding.status]
    if finding.activity_id is not None:  # history knows better than one night's status (drift)
        activity_id, activity_name = finding.activity_id, ACTIVITY_NAME[finding.activity_id]
    compliance_id, compliance_name = COMPLIANCE_STATUS[finding.status]
    severity_id = SEVERITY_ID[finding.severity]
    details: list[JsonValue] = [finding.message]
    if finding.error_stage is not None:
        details.append(f"{finding.error_stage}/{finding.error_reason}: {finding.error_message}")
    parameters: list[JsonValue] = []
    for name, value in (
        ("registry_path", finding.registry_path),
        ("data_type", finding.data_type),
        ("observed", finding.observed),
        ("effective_mode", finding.effective_mode),
        ("integrity", finding.integrity),
        ("os_family", finding.os_family),
    ):
        if value is not None:
            parameters.append({"name": name, "value": value})
    os: dict[str, JsonValue] = {
        "name": finding.os_caption or "Windows",
        "type_id": OS_TYPE_WINDOWS,
        "type": "Windows",
    }
    if finding.os_version is not None:
        os["version"] = finding.os_version
    device: dict[str, JsonValue] = {
        "type_id": DEVICE_TYPE_UNKNOWN,
        "type": "Unknown",
        "hostname": finding.host,
        "name": finding.host,
        "os": os,
    }
    if finding.address_ip is not None:
        device["ip"] = finding.address_ip
    resource: dict[str, JsonValue] = {
        "uid": finding.registry_path or finding.host,
        "name": finding.registry_path or finding.host,
        "type": "Windows Registry Value" if finding.registry_path else "Windows Host",
        "hostname": finding.host,
    }
    result: dict[str, JsonValue] = {
        "activity_id": activity_id,
        "activity_name": activity_name,
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Compliance Finding",
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": f"Compliance Finding: {activity_name}",
        "time": finding.time_ms,
        "severity_id": severity_id,
        "severity": _SEVERITY_NAME[severity_id],
        "status_id": status_id,
        "status": status_name,
        "message": finding.message,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": finding.event_uid,
            "correlation_uid": finding.scan_id,
            "product": {
                "name": finding.tool_name,
                "vendor_name": finding.tool_name,
                "version": finding.tool_version,
            },
        },
        "finding_info": {
            "uid": finding.finding_uid,
            "title": finding.rule_title,
            "analytic": {
                "uid": finding.rule_id,
                "name": finding.rule_title,
                "type_id": ANALYTIC_RULE,
                "type": "Rule",
            },
        },
        "compliance": {
            "control": finding.rule_id,
            "standards": list(finding.policies),
            "status_id": compliance_id,
            "status": compliance_name,
            "status_details": details,
            "control_parameters": parameters,
        },
        "device": device,
        "resources": [resource],
    }
    if finding.error_stage is not None:
        result["status_detail"] = f"{finding.error_stage}/{finding.error_reason}"
    return result


def line(finding: Finding) -> str:
    """Return one OCSF event as a JSON line (no newline)."""
    return json_line(event(finding))


def render(header: ReportHeader, hosts: Iterable[HostReport], out: TextIO) -> None:
    """Write one OCSF Compliance Finding event per line to `out`, host by host."""
    for finding in flatten(header, hosts):
        out.write(line(finding) + "\n")
