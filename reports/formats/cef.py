"""Render findings as ArcSight CEF:0 lines (docs/siem.md#cef), one event per finding."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TextIO

from reports.findings import Finding, flatten
from reports.model import HostReport, ReportHeader
from scanner.core.results import Severity, Status
from scanner.core.sanitize import cef_extension as escape_extension
from scanner.core.sanitize import cef_header as escape_header

VENDOR = "natt-audit"
PRODUCT = "natt-audit"

# docs/siem.md#severity-scale: info 1, low 3, medium 5, high 8, critical 10.
CEF_SEVERITY: dict[Severity, int] = {
    Severity.INFO: 1,
    Severity.LOW: 3,
    Severity.MEDIUM: 5,
    Severity.HIGH: 8,
    Severity.CRITICAL: 10,
}

# Field lengths from the ArcSight CEF dictionary; values are cut to these BEFORE escaping, so an
# escape sequence is never split. Header: Device Vendor/Product 63, Version 31, Signature ID
# 1023, Name 512.
HEADER_LIMITS = (63, 63, 31, 1023, 512)
LIMITS: dict[str, int] = {
    "externalId": 40,
    "outcome": 63,
    "msg": 1023,
    "cat": 1023,
    "dhost": 1023,
    "reason": 1023,
    "flexString1": 1023,
    "flexString2": 1023,
    **{f"cs{n}": 4000 for n in range(1, 7)},
}
LABEL_LIMIT = 1023

# csN labels (docs/siem.md#cef: status, registry path, expected, finding_uid, scan id; cs6 the stored data).
LABELS: dict[str, str] = {
    "cs1": "status",
    "cs2": "registryPath",
    "cs3": "expected",
    "cs4": "findingUid",
    "cs5": "scanId",
    "cs6": "observed",
    "cn1": "observedValue",
    "c6a3": "destinationIPv6",
    "flexString1": "ruleSeverity",
    "flexString2": "osCaption",
}

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1  # cnN are CEF Long


def _outcome(status: Status) -> str:
    return {
        Status.PASS: "success",
        Status.FAIL: "failure",
        Status.ERROR: "error",
        Status.NOT_APPLICABLE: "not_applicable",
        Status.WAIVED: "waived",
    }[status]


def extension(finding: Finding) -> list[tuple[str, str]]:
    """Return the extension pairs of a finding, unescaped and untruncated, in output order."""
    pairs: list[tuple[str, str]] = [
        ("externalId", finding.event_uid),
        ("rt", str(finding.time_ms)),
        ("cat", "compliance"),
        ("outcome", _outcome(finding.status)),
        ("dhost", finding.host),
    ]
    if finding.address_ip is not None and ":" not in finding.address_ip:
        pairs.append(("dst", finding.address_ip))
    elif finding.address_ip is not None:
        pairs += [("c6a3Label", LABELS["c6a3"]), ("c6a3", finding.address_ip)]
    pairs.append(("dpt", str(finding.port)))
    customs = {
        "cs1": finding.status.value,
        "cs2": finding.registry_path,
        "cs3": finding.rule_title,
        "cs4": finding.finding_uid,
        "cs5": finding.scan_id,
        "cs6": finding.observed,
    }
    for key, value in customs.items():
        if value is not None:
            pairs += [(f"{key}Label", LABELS[key]), (key, value)]
    raw = finding.raw_value
    if isinstance(raw, int) and not isinstance(raw, bool) and _LONG_MIN <= raw <= _LONG_MAX:
        pairs += [("cn1Label", LABELS["cn1"]), ("cn1", str(raw))]
    pairs += [("flexString1Label", LABELS["flexString1"]), ("flexString1", finding.rule_severity.value)]
    if finding.os_caption is not None:
        pairs += [("flexString2Label", LABELS["flexString2"]), ("flexString2", finding.os_caption)]
    if finding.error_stage is not None:
        pairs.append(("reason", f"{finding.error_stage}/{finding.error_reason}: {finding.error_message}"))
    pairs.append(("msg", finding.message))
    return pairs


def truncate(key: str, value: str) -> str:
    """Return `value` cut to the dictionary length of `key` (labels: 1023)."""
    limit = LABEL_LIMIT if key.endswith("Label") else LIMITS.get(key)
    return value if limit is None else value[:limit]


def event(finding: Finding) -> str:
    """Return one CEF line (no newline) for a finding."""
    header_values = (
        VENDOR,
        PRODUCT,
        finding.tool_version,
        finding.rule_id,
        finding.rule_title,
    )
    header = "|".join(
        escape_header(value[:limit]) for value, limit in zip(header_values, HEADER_LIMITS, strict=True)
    )
    ext = " ".join(f"{key}={escape_extension(truncate(key, value))}" for key, value in extension(finding))
    return f"CEF:0|{header}|{CEF_SEVERITY[finding.severity]}|{ext}"


def render(header: ReportHeader, hosts: Iterable[HostReport], out: TextIO) -> None:
    """Write one CEF line per finding to `out`, host by host."""
    for finding in flatten(header, hosts):
        out.write(event(finding) + "\n")
