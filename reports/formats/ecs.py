"""Render findings as Elastic Common Schema documents shaped like Elastic's posture findings."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import TextIO

from reports.findings import Finding, JsonValue, flatten, json_line
from reports.model import HostReport, ReportHeader
from scanner.core.results import Severity, Status

ECS_VERSION = "8.11.0"
# Elastic's posture findings know passed/failed only; other statuses omit result.evaluation and
# keep natt_audit.status.
EVALUATION: dict[Status, str] = {Status.PASS: "passed", Status.FAIL: "failed"}
OUTCOME: dict[Status, str] = {Status.PASS: "success", Status.FAIL: "failure"}
SEVERITY_NUMBER: dict[Severity, int] = {
    Severity.INFO: 1,
    Severity.LOW: 3,
    Severity.MEDIUM: 5,
    Severity.HIGH: 8,
    Severity.CRITICAL: 10,
}


def _registry(finding: Finding) -> dict[str, JsonValue] | None:
    if finding.registry_path is None:
        return None
    registry: dict[str, JsonValue] = {
        "hive": finding.registry_hive,
        "key": finding.registry_key,
        "value": finding.registry_value,
        "path": finding.registry_path,
    }
    raw = finding.raw_value
    data: dict[str, JsonValue] = {}
    if finding.data_type is not None:
        data["type"] = finding.data_type
    if isinstance(raw, list):
        data["strings"] = list(raw)
    elif isinstance(raw, str) and finding.data_type == "REG_BINARY":
        try:  # ECS: binary data goes base64-encoded in registry.data.bytes
            data["bytes"] = base64.b64encode(bytes.fromhex(raw)).decode("ascii")
        except ValueError:
            data["strings"] = [raw]
    elif raw is not None:
        data["strings"] = [str(raw)]  # ECS: numbers as their decimal representation
    if data:
        registry["data"] = data
    return registry


def document(finding: Finding) -> dict[str, JsonValue]:
    """Return the ECS document of one finding."""
    event: dict[str, JsonValue] = {
        "kind": "state",
        "category": ["configuration"],
        "type": ["info"],
        "id": finding.event_uid,
        "dataset": "natt_audit.findings",
        "module": "natt_audit",
        "severity": SEVERITY_NUMBER[finding.severity],
    }
    if finding.status in OUTCOME:
        event["outcome"] = OUTCOME[finding.status]
    os: dict[str, JsonValue] = {"type": "windows", "family": "windows", "platform": "windows"}
    if finding.os_version is not None:
        os["version"] = finding.os_version
    if finding.os_caption is not None:
        os["full"] = finding.os_caption
    host: dict[str, JsonValue] = {"name": finding.host, "hostname": finding.host, "os": os}
    if finding.address_ip is not None:
        host["ip"] = [finding.address_ip]
    natt: dict[str, JsonValue] = {
        "finding_uid": finding.finding_uid,
        "scan_id": finding.scan_id,
        "status": finding.status.value,
        "host_status": finding.host_status.value,
        "address": finding.address,
        "port": finding.port,
        "tags": dict(finding.tags),
        "effective_mode": finding.effective_mode,
        "integrity": finding.integrity,
        "os_family": finding.os_family,
    }
    if finding.error_stage is not None:
        natt["error"] = {
            "stage": finding.error_stage,
            "reason": finding.error_reason,
            "message": finding.error_message,
        }
    doc: dict[str, JsonValue] = {
        "@timestamp": finding.time,
        "ecs": {"version": ECS_VERSION},
        "event": event,
        "message": finding.message,
        "rule": {
            "id": finding.rule_id,
            "name": finding.rule_title,
            "ruleset": ",".join(finding.policies),
            "category": "compliance",
        },
        "resource": {
            "id": finding.host.strip().lower(),
            "name": finding.host,
            "type": "host",
            "sub_type": "windows-registry-value",
        },
        "host": host,
        "observer": {
            "vendor": finding.tool_name,
            "product": finding.tool_name,
            "version": finding.tool_version,
        },
        "log": {"level": finding.severity.value},
        "natt_audit": natt,
    }
    if finding.status in EVALUATION:
        doc["result"] = {"evaluation": EVALUATION[finding.status]}
    registry = _registry(finding)
    if registry is not None:
        doc["registry"] = registry
    return doc


def line(finding: Finding) -> str:
    """Return one ECS document as a JSON line (no newline)."""
    return json_line(document(finding))


def render(header: ReportHeader, hosts: Iterable[HostReport], out: TextIO) -> None:
    """Write one ECS document per line to `out` (NDJSON, ready for the bulk API with `create`)."""
    for finding in flatten(header, hosts):
        out.write(line(finding) + "\n")
