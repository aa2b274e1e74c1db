"""With history, OCSF events carry the finding's lifecycle: Create, Update, Close."""

from __future__ import annotations

import io
import json

from reports.findings import Finding, flatten
from reports.formats import ocsf
from reports.hosts import Report
from reports.model import Drift, FindingDrift
from scanner.core.results import Status, finding_uid
from tests.support.sample_report import make_sample_report


def findings_of(report: Report) -> list[Finding]:
    """Return the flattened report."""
    return list(flatten(report.header, report.hosts))


def ocsf_text(report: Report) -> str:
    """Return the OCSF lines of the report."""
    out = io.StringIO()
    ocsf.render(report.header, report.hosts, out)
    return out.getvalue()


def _activity(text: str, uid: str) -> set[int]:
    events = [json.loads(line) for line in text.splitlines()]
    return {e["activity_id"] for e in events if e["finding_info"]["uid"] == uid}


def test_without_history_activity_follows_the_status() -> None:
    report = make_sample_report()
    assert all(f.activity_id is None for f in findings_of(report))
    text = ocsf_text(report)
    fail = next(f for f in findings_of(report) if f.status is Status.FAIL)
    assert _activity(text, fail.finding_uid) == {1}


def test_drift_makes_new_failures_create_and_old_ones_update() -> None:
    base = make_sample_report()
    failing = [f for f in findings_of(base) if f.status is Status.FAIL]
    new, old = failing[0], failing[1]
    passing = next(f for f in findings_of(base) if f.status is Status.PASS)
    drift = Drift(
        previous_scan_id="prev",
        previous_started_at="2026-11-26T01:00:00Z",
        new_failures=[
            FindingDrift(
                host=new.host,
                rule_id=new.rule_id,
                finding_uid=new.finding_uid,
                severity=new.rule_severity,
                before=Status.PASS,
                after=Status.FAIL,
            )
        ],
        resolved_failures=[
            FindingDrift(
                host=passing.host,
                rule_id=passing.rule_id,
                finding_uid=passing.finding_uid,
                severity=passing.rule_severity,
                before=Status.FAIL,
                after=Status.PASS,
            )
        ],
        changed_failures=[],
        changed_settings=[],
        newly_unreachable=[],
        reachable_again=[],
        joined=[],
        left=[],
    )
    report = Report(base.header.model_copy(update={"drift": drift}), base.hosts)
    text = ocsf_text(report)
    assert new.finding_uid == finding_uid(new.rule_id, new.host)
    assert _activity(text, new.finding_uid) == {1}  # Create: failing for the first time
    assert _activity(text, old.finding_uid) == {2}  # Update: still failing since last night
    assert _activity(text, passing.finding_uid) == {3}  # Close: fixed
    for line in text.splitlines():
        event = json.loads(line)
        assert event["type_uid"] == 200300 + event["activity_id"]
