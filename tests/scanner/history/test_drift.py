"""Drift between two real reports, and the OCSF lifecycle events it implies."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from reports.formats.console import render_console
from reports.hosts import MemoryHosts, Report
from reports.lifecycle import Activity, drift_events
from scanner.core.results import Status, finding_uid
from scanner.history.drift import compute_drift, drift_counts
from tests.support.nightly_helpers import read, report, unreachable


def test_every_kind_of_change_is_reported() -> None:
    before = report(
        [
            read("h-new-fail", 1),
            read("h-fixed", 2),
            read("h-same", 0),
            read("h-goes-dark", 2),
            unreachable("h-back"),
            read("h-left", 2),
            read("h-evidence", 2),
        ]
    )
    after = report(
        [
            read("h-new-fail", 2),
            read("h-fixed", 1),
            read("h-same", 0),
            unreachable("h-goes-dark", "reset"),
            read("h-back", 0),
            read("h-joined", 2),
            read("h-evidence", 3),
        ],
        started="2026-11-27T01:00:00Z",
    )
    drift = compute_drift(before, after)
    assert drift.previous_scan_id == before.header.scan.id
    assert [(f.host, f.rule_id, f.before, f.after) for f in drift.new_failures] == [
        ("h-evidence", "NATT-002", Status.PASS, Status.FAIL),  # 3 is not a valid DWORD
        ("h-joined", "NATT-001", None, Status.FAIL),
        ("h-new-fail", "NATT-001", Status.PASS, Status.FAIL),
    ]
    assert [(f.host, f.rule_id, f.after) for f in drift.resolved_failures] == [
        ("h-fixed", "NATT-001", Status.PASS),
    ]  # h-left failed but left the inventory: listed in `left`, not "resolved"
    assert [(f.host, f.rule_id) for f in drift.changed_failures] == [("h-evidence", "NATT-001")]
    modes = {(c.host, c.field): (c.before, c.after) for c in drift.changed_settings}
    assert modes[("h-new-fail", "effective_mode")] == ("1", "2")
    assert modes[("h-fixed", "effective_mode")] == ("2", "1")
    assert modes[("h-evidence", "raw_value")] == ("2", "3")
    assert ("h-same", "effective_mode") not in modes
    assert [(h.host, h.reason) for h in drift.newly_unreachable] == [("h-goes-dark", "connect/reset")]
    assert [(h.host, h.reason) for h in drift.reachable_again] == [("h-back", "connect/refused")]
    assert drift.joined == ["h-joined"]
    assert drift.left == ["h-left"]
    # A host that goes dark keeps its finding open: no Close for h-goes-dark.
    assert all(f.host != "h-goes-dark" for f in drift.resolved_failures)
    counts = drift_counts(drift)
    assert counts["new_failures"] == 3
    assert counts["changed_settings"] == 3


def test_drift_events_map_to_ocsf_activities_with_stable_uids() -> None:
    before = report([read("a", 2), read("b", 0), unreachable("c"), read("d", 2)])
    after = report([read("a", 0), read("b", 2), read("c", 2), read("d", 3)])
    events = drift_events(compute_drift(before, after))
    got = {(e.host, e.rule_id): (e.activity_id, e.before, e.after) for e in events}
    assert got[("a", "NATT-001")] == (Activity.CLOSE, Status.FAIL, Status.PASS)
    assert got[("b", "NATT-001")] == (Activity.CREATE, Status.PASS, Status.FAIL)
    # Unread last night: the finding may already be open, so Update, not Create.
    assert got[("c", "NATT-001")] == (Activity.UPDATE, Status.ERROR, Status.FAIL)
    # Still failing, evidence changed (2 -> 3): Update.
    assert got[("d", "NATT-001")] == (Activity.UPDATE, Status.FAIL, Status.FAIL)
    for e in events:
        assert e.finding_uid == finding_uid(e.rule_id, e.host)
    assert [int(a) for a in Activity] == [1, 2, 3]


MODES = st.sampled_from([None, 0, 1, 2, 3, "dark"])


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from("abcdef"), MODES), st.dictionaries(st.sampled_from("abcdef"), MODES))
def test_drift_properties(old: dict[str, object], new: dict[str, object]) -> None:
    def build(spec: dict[str, object], started: str) -> Report:
        obs = [
            unreachable(n) if m == "dark" else read(n, m if isinstance(m, int) else None)
            for n, m in sorted(spec.items())
        ]
        return report(obs, started=started)

    before, after = build(old, "2026-11-26T01:00:00Z"), build(new, "2026-11-27T01:00:00Z")
    drift = compute_drift(before, after)
    # Nothing changes against itself.
    same = compute_drift(after, after)
    assert not (same.new_failures or same.resolved_failures or same.changed_settings or same.joined or same.left)
    assert set(drift.joined) == set(new) - set(old)
    assert set(drift.left) == set(old) - set(new)
    # Each finding is opened or closed at most once, never both.
    opened = {f.finding_uid for f in drift.new_failures}
    closed = {f.finding_uid for f in drift.resolved_failures}
    assert not opened & closed
    # Every new failure fails now; every resolved one failed before.
    now = {r.finding_id: r.status for h in after.hosts for r in h.results}
    then = {r.finding_id: r.status for h in before.hosts for r in h.results}
    assert all(now[u] is Status.FAIL for u in opened)
    assert all(then[u] is Status.FAIL for u in closed)
    # Reversing the drift swaps joined/left.
    back = compute_drift(after, before)
    assert back.joined == drift.left and back.left == drift.joined


def test_console_summary_shows_drift_with_host_text_made_inert() -> None:
    hostile = "evil\x1b[2J\nname"
    before = report([read("a", 1), read(hostile, 0)])
    after = report([read("a", 2), read(hostile, 2)], started="2026-11-27T01:00:00Z")
    after = Report(after.header.model_copy(update={"drift": compute_drift(before, after)}), after.hosts)
    out = io.StringIO()
    render_console(after.header, after.hosts, out, color=False)
    text = out.getvalue()
    assert f"since scan {before.header.scan.id[:8]}" in text
    assert "2 new failures: a NATT-001, evil\\x1b[2J\\nname NATT-001" in text
    assert "\x1b" not in text
    assert "a effective_mode 1 -> 2" in text


def test_a_rule_dropped_from_the_policy_is_not_resolved() -> None:
    before = report([read("h1", 2)])
    after = report([read("h1", 2)], started="2026-11-27T01:00:00Z")
    after = Report(
        after.header,
        MemoryHosts.of(
            h.model_copy(update={"results": [r for r in h.results if r.rule_id != "NATT-001"]}) for h in after.hosts
        ),
    )
    drift = compute_drift(before, after)
    assert drift.resolved_failures == []
    assert not [e for e in drift_events(drift) if e.rule_id == "NATT-001"]
