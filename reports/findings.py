"""Flatten a report into one record per (host, rule) result: the unit every SIEM export sends."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Iterator
from datetime import datetime

from reports.lifecycle import drift_events
from reports.model import HostReport, ReportHeader
from scanner.core.models import VALUE_NAME, Frozen
from scanner.core.results import RuleResult, Severity, Status, event_uid, finding_uid
from scanner.core.sanitize import json_text

HIVE = "HKLM"
# A host with no rule result at all (unread before any rule ran, or no rule applied) still reaches
# every export as one record of this pseudo rule, so no host disappears (docs/reliability.md#no-host-disappears).
HOST_RULE_ID = "HOST-READ"
HOST_RULE_TITLE = "Host could be read and assessed"
HOST_RULE_SEVERITY = Severity.HIGH

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


def json_line(value: JsonValue) -> str:
    """Return `value` as one line of compact JSON (no raw newline), inert when viewed."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return json_text(text)


def clean(text: str) -> str:
    """Return `text` encodable as UTF-8: lone surrogates (undecodable host bytes) become \\udcXX text."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def epoch_ms(rfc3339: str) -> int:
    """Return milliseconds since the epoch of an RFC 3339 time (`Z` or an offset)."""
    moment = datetime.fromisoformat(rfc3339.replace("z", "Z").replace("Z", "+00:00"))
    return int(moment.timestamp() * 1000)


RawValue = int | str | list[str] | None


# OCSF activity of a finding whose state did not change since the previous scan.
_STEADY: dict[Status, int] = {
    Status.FAIL: 2,
    Status.ERROR: 2,
    Status.WAIVED: 2,
    Status.PASS: 3,
    Status.NOT_APPLICABLE: 3,
}


class Finding(Frozen):
    """One (host, rule) result with everything an export needs, flat and self-contained."""

    # identity
    event_uid: str
    finding_uid: str
    scan_id: str
    time: str  # RFC 3339, the scan's finish time: when this state was observed
    time_ms: int
    tool_name: str
    tool_version: str
    policies: list[str]
    # the rule and its outcome
    rule_id: str
    rule_title: str
    rule_severity: Severity
    severity: Severity  # what the event weighs: the rule's for fail/error, info otherwise
    status: Status
    message: str
    # the host
    host: str
    address: str
    address_ip: str | None  # `address` when it is an IP literal
    port: int
    tags: dict[str, str]
    host_status: Status
    os_version: str | None
    os_caption: str | None
    os_family: str | None
    # the registry evidence (None when the host was not read)
    registry_hive: str | None
    registry_key: str | None
    registry_value: str | None
    registry_path: str | None
    data_type: str | None
    raw_value: RawValue
    effective_mode: str | None
    integrity: str | None
    # why a host could not be read (on every record of that host)
    error_stage: str | None
    error_reason: str | None
    error_message: str | None
    # OCSF lifecycle from history: 1 Create, 2 Update, 3 Close; None when there is no previous scan
    activity_id: int | None = None

    @property
    def observed(self) -> str | None:
        """Return the stored data as text: decimal for numbers, JSON for a REG_MULTI_SZ list."""
        value = self.raw_value
        if value is None:
            return None
        if isinstance(value, list):
            return json.dumps(value, ensure_ascii=False)
        return str(value)


def event_severity(severity: Severity, status: Status) -> Severity:
    """Return what the event weighs: a passing, waived or n/a check is informational."""
    return severity if status in (Status.FAIL, Status.ERROR) else Severity.INFO


def _ip(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def _raw(value: RawValue) -> RawValue:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, list):
        return [clean(item) for item in value]
    return value


def _host_results(host: HostReport) -> list[RuleResult]:
    if host.results:
        return list(host.results)
    if host.error is not None:
        status, message = Status.ERROR, host.error.message
    else:
        status, message = Status.NOT_APPLICABLE, "no rule applied to this host"
    return [
        RuleResult(
            rule_id=HOST_RULE_ID,
            title=HOST_RULE_TITLE,
            severity=HOST_RULE_SEVERITY,
            status=status,
            message=message,
            finding_id=finding_uid(HOST_RULE_ID, host.name),
        )
    ]


def _finding(report: ReportHeader, host: HostReport, result: RuleResult) -> Finding:
    scan = report.scan
    setting = host.setting
    fuid = finding_uid(result.rule_id, host.name)
    key = setting.applicable_key if setting is not None else None
    value_name = (setting.value_name or VALUE_NAME) if setting is not None and key is not None else None
    return Finding(
        event_uid=event_uid(fuid, scan.id),
        finding_uid=fuid,
        scan_id=scan.id,
        time=scan.finished_at,
        time_ms=epoch_ms(scan.finished_at),
        tool_name=report.tool.name,
        tool_version=report.tool.version,
        policies=[clean(p) for p in scan.policies],
        rule_id=result.rule_id,
        rule_title=clean(result.title),
        rule_severity=result.severity,
        severity=event_severity(result.severity, result.status),
        status=result.status,
        message=clean(result.message),
        host=clean(host.name),
        address=clean(host.address),
        address_ip=_ip(host.address),
        port=host.port,
        tags={clean(k): clean(v) for k, v in sorted(host.tags.items())},
        host_status=host.status,
        os_version=clean(host.os.version) if host.os is not None else None,
        os_caption=clean(host.os.caption) if host.os is not None and host.os.caption is not None else None,
        os_family=setting.os_family.value if setting is not None else None,
        registry_hive=HIVE if key is not None else None,
        registry_key=key,
        registry_value=clean(value_name) if value_name is not None else None,
        registry_path=f"{HIVE}\\{key}\\{clean(value_name)}" if key is not None and value_name else None,
        data_type=setting.raw_type if setting is not None else None,
        raw_value=_raw(setting.raw_value) if setting is not None else None,
        effective_mode=str(setting.effective_mode) if setting is not None else None,
        integrity=setting.integrity.value if setting is not None else None,
        error_stage=host.error.stage.value if host.error is not None else None,
        error_reason=clean(host.error.reason) if host.error is not None else None,
        error_message=clean(host.error.message) if host.error is not None else None,
    )


def _activities(report: ReportHeader) -> dict[str, int] | None:
    """Return finding_uid -> OCSF activity from the report's drift, None without a previous scan."""
    if report.drift is None:
        return None

    return {e.finding_uid: int(e.activity_id) for e in drift_events(report.drift)}


def flatten(header: ReportHeader, hosts: Iterable[HostReport]) -> Iterator[Finding]:
    """Yield one Finding per (host, rule) result in report order (hosts by name, rules by id), host by host."""
    activities = _activities(header)
    for host in hosts:
        for result in _host_results(host):
            finding = _finding(header, host, result)
            if activities is not None:
                # With history, a finding's lifecycle is known: Create/Update/Close from the drift,
                # and an unchanged open finding is an Update of itself, an unchanged passing one a
                # Close (docs/siem.md#ocsf).
                activity = activities.get(finding.finding_uid, _STEADY[finding.status])
                finding = finding.model_copy(update={"activity_id": activity})
            yield finding


def to_record(finding: Finding) -> dict[str, JsonValue]:
    """Return the finding as a plain JSON object in field order (enums as their values)."""
    record: dict[str, JsonValue] = {}
    for name in Finding.model_fields:
        value = getattr(finding, name)
        if isinstance(value, Severity | Status):
            value = value.value
        elif isinstance(value, dict):
            value = dict(value)
        elif isinstance(value, list):
            value = list(value)
        record[name] = value
    return record


def from_record(record: dict[str, object]) -> Finding:
    """Return the Finding a `to_record` object describes (strictly validated)."""
    return Finding.model_validate(record)
