"""The SIEM lifecycle of a finding implied by a drift: OCSF Create, Update or Close. Pure.

The drift itself (what changed between two scans) is computed by scanner/history/drift.py; this
module only reads the `Drift` model of the report, so every exporter can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from reports.build import host_sort_key
from reports.model import Drift
from scanner.core.results import Severity, Status


class Activity(IntEnum):
    """OCSF Compliance Finding activity_id (docs/siem.md#ocsf)."""

    CREATE = 1
    UPDATE = 2
    CLOSE = 3


@dataclass(frozen=True, order=True)
class DriftEvent:
    """One finding lifecycle event for a SIEM exporter: OCSF activity on `finding_uid`."""

    host: str
    rule_id: str
    finding_uid: str
    activity_id: Activity
    severity: Severity
    before: Status | None
    after: Status | None


def drift_events(drift: Drift) -> list[DriftEvent]:
    """Return the OCSF lifecycle events of a drift: Create, Update or Close per finding_uid.

    Create (1): a new failure that was pass/waived/n.a./absent before. Update (2): a failure
    seen after an unread night (the finding may already be open), or a failure whose evidence
    changed (`changed_failures`). Close (3): a resolved failure. Sorted by host, rule, activity.
    """
    events: list[DriftEvent] = []
    for f in drift.new_failures:
        activity = Activity.UPDATE if f.before is Status.ERROR else Activity.CREATE
        events.append(DriftEvent(f.host, f.rule_id, f.finding_uid, activity, f.severity, f.before, f.after))
    for f in drift.changed_failures:
        events.append(
            DriftEvent(f.host, f.rule_id, f.finding_uid, Activity.UPDATE, f.severity, f.before, f.after)
        )
    for f in drift.resolved_failures:
        events.append(
            DriftEvent(f.host, f.rule_id, f.finding_uid, Activity.CLOSE, f.severity, f.before, f.after)
        )
    return sorted(events, key=lambda e: (host_sort_key(e.host), e.rule_id, e.activity_id))
