"""What evaluation produces: one result per (host, rule)."""

from __future__ import annotations

import uuid
from enum import StrEnum

from scanner.core.models import Frozen

# Fixed namespace so ids are stable across nights and machines (docs/siem.md#identifiers).
NAMESPACE = uuid.UUID("6f1c3a52-8d0e-5b7a-9c4e-2a1d0b3f7e91")


class Status(StrEnum):
    """Outcome of one rule for one host."""

    PASS = "pass"  # noqa: S105 - a status, not a password
    FAIL = "fail"
    ERROR = "error"
    NOT_APPLICABLE = "not_applicable"
    WAIVED = "waived"


# A host's status is the worst of its results: error > fail > waived > pass > not_applicable.
STATUS_RANK: dict[Status, int] = {
    Status.ERROR: 4,
    Status.FAIL: 3,
    Status.WAIVED: 2,
    Status.PASS: 1,
    Status.NOT_APPLICABLE: 0,
}


def worst(statuses: list[Status] | tuple[Status, ...]) -> Status:
    """Return the worst status, not_applicable for none."""
    return max(statuses, key=STATUS_RANK.__getitem__, default=Status.NOT_APPLICABLE)


class Severity(StrEnum):
    """Severity of a rule, in the scale of docs/siem.md#severity-scale."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Return 0 (info) .. 4 (critical) for comparisons."""
        return list(Severity).index(self)


def host_identity(name: str) -> str:
    """Return the stable identity of a host: its lower-cased name."""
    return name.strip().lower()


def finding_uid(rule_id: str, host_name: str) -> str:
    """Return UUIDv5(rule id | host identity): stable night after night."""
    return str(uuid.uuid5(NAMESPACE, f"{rule_id}|{host_identity(host_name)}"))


def event_uid(finding: str, scan_id: str) -> str:
    """Return UUIDv5(finding_uid | scan id): the idempotency key of one export."""
    return str(uuid.uuid5(NAMESPACE, f"{finding}|{scan_id}"))


class WaiverNote(Frozen):
    """The waiver that covered a failing result (applied) or would have (expired)."""

    label: str  # the waiver's id, else its ticket, else FILE:LINE
    state: str  # "applied" or "expired"
    justification: str
    owner: str | None = None
    approver: str | None = None
    ticket: str | None = None
    expires: str  # ISO date, the last day in force (UTC)
    source: str  # "waivers.yaml:12"


class RuleResult(Frozen):
    """The outcome of one rule on one host, with the evidence a reader needs."""

    rule_id: str
    title: str
    severity: Severity
    status: Status
    message: str
    finding_id: str
    waiver: WaiverNote | None = None  # set when a waiver applied to, or expired on, this failure
