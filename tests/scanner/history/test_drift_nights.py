"""Drift stays honest across bad nights: each host against its last read, low-coverage nights never a baseline.

Reproduced on main: after a night where the password was wrong (coverage 0 %, recorded as a
complete scan) the next good night reported every existing failure as new and every host as
"reachable again", so a nightly job re-alerted the whole estate after one password rotation.
Nights are recorded in a real SQLite store the way the scan records them (scanner/engine/scan.py
`_record`): baseline, drift host by host, then the scan with its drift.
"""

from __future__ import annotations

from pathlib import Path

from reports.hosts import Report
from reports.lifecycle import Activity, drift_events
from reports.model import Drift
from scanner.core.models import Observation
from scanner.core.results import Status
from scanner.history.drift import by_identity, drift_between
from scanner.history.store import SqliteStore
from tests.support.nightly_helpers import read, report, unreachable

INV = "path:/etc/natt-audit/hosts.yaml"
FLOOR = 0.5


def night(store: SqliteStore, day: int, hosts: list[Observation], *, interrupted: bool = False) -> Drift | None:
    """Record one night as `natt-audit scan` does; return its drift (None without a baseline)."""
    started = f"2026-11-{day:02}T01:00:00Z"
    built = report(hosts, started=started, scan_id=f"night-{day:02}")
    scan = built.header.scan.model_copy(update={"interrupted": interrupted})
    header = built.header.model_copy(update={"scan": scan})
    previous = store.baseline_scan(INV, current=scan.id, started_at=started, min_coverage=FLOOR)
    drift = None
    if previous is not None:
        drift = drift_between(
            previous.id,
            previous.started_at,
            store.baseline_hosts(previous, current=scan.id, started_at=started),
            by_identity(built.hosts),
        )
        header = header.model_copy(update={"drift": drift})
    store.record_scan(header, Report(header, built.hosts).hosts, inventory_id=INV)
    return drift


def changes(drift: Drift | None) -> dict[str, list[tuple[str, ...]]]:
    assert drift is not None
    return {
        "new": [(f.host, f.rule_id) for f in drift.new_failures],
        "resolved": [(f.host, f.rule_id) for f in drift.resolved_failures],
        "unreachable": [(h.host,) for h in drift.newly_unreachable],
        "back": [(h.host,) for h in drift.reachable_again],
        "settings": [(s.host, s.field) for s in drift.changed_settings],
    }


NOTHING: dict[str, list[tuple[str, ...]]] = {"new": [], "resolved": [], "unreachable": [], "back": [], "settings": []}


def test_a_wrong_password_night_is_recorded_but_the_next_night_compares_with_the_last_good_one(
    tmp_path: Path,
) -> None:
    estate = [read("a", 2), read("b", 0), read("c", 2), read("d", 1)]
    with SqliteStore(tmp_path / "h.db") as store:
        assert night(store, 1, estate) is None
        dark = night(store, 2, [unreachable(o.target.name, "unauthorized") for o in estate])
        assert changes(dark)["unreachable"] == [("a",), ("b",), ("c",), ("d",)]  # honest for that night
        assert changes(dark)["new"] == [] and changes(dark)["resolved"] == []
        again = night(store, 3, estate)
        assert again is not None and again.previous_scan_id == "night-01"  # not the 0 % night
        assert changes(again) == NOTHING
        assert drift_events(again) == []  # nothing re-alerted
        assert [r.coverage for r in store.scans(inventory_id=INV)] == [1.0, 0.0, 1.0]  # all recorded


def test_a_host_unread_for_a_night_that_fails_again_is_not_a_new_failure(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "h.db") as store:
        night(store, 1, [read("a", 2), read("b", 2)])
        second = night(store, 2, [unreachable("a"), read("b", 2)])  # 50 %: a baseline itself
        assert changes(second)["unreachable"] == [("a",)]
        third = night(store, 3, [read("a", 2), read("b", 2)])
        assert third is not None and third.previous_scan_id == "night-02"
        assert changes(third) == {**NOTHING, "back": [("a",)]}  # unread last night: honest
        assert drift_events(third) == []


def test_a_finding_open_then_unread_then_passing_is_resolved_and_closed(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "h.db") as store:
        night(store, 1, [read("a", 2), read("b", 0)])
        night(store, 2, [unreachable("a"), read("b", 0)])
        fixed = night(store, 3, [read("a", 1), read("b", 0)])
        assert fixed is not None
        assert changes(fixed)["resolved"] == [("a", "NATT-001")]
        assert [f.before for f in fixed.resolved_failures] == [Status.FAIL]
        assert ("a", "effective_mode") in changes(fixed)["settings"]  # 2 (last read) -> 1
        events = drift_events(fixed)
        assert [(e.host, e.rule_id, e.activity_id) for e in events] == [("a", "NATT-001", Activity.CLOSE)]


def test_a_host_unread_for_several_nights_keeps_its_last_read(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "h.db") as store:
        night(store, 1, [read("a", 2), read("b", 0), read("c", 0)])
        for day in (2, 3, 4):
            night(store, day, [unreachable("a"), read("b", 0), read("c", 0)])
        back = night(store, 5, [read("a", 2), read("b", 0), read("c", 0)])
        assert changes(back) == {**NOTHING, "back": [("a",)]}


def test_a_host_read_on_a_low_coverage_night_keeps_that_read(tmp_path: Path) -> None:
    # Night 2 reads only a (25 %): never a baseline, but what it read is the host's last read, so
    # the fix it saw is not reported twice.
    with SqliteStore(tmp_path / "h.db") as store:
        night(store, 1, [read("a", 2), read("b", 0), read("c", 0), read("d", 0)])
        low = night(store, 2, [read("a", 1), unreachable("b"), unreachable("c"), unreachable("d")])
        assert changes(low)["resolved"] == [("a", "NATT-001")]
        third = night(store, 3, [read("a", 1), read("b", 0), read("c", 0), read("d", 0)])
        assert third is not None and third.previous_scan_id == "night-01"
        assert changes(third) == NOTHING


def test_an_interrupted_night_is_never_the_baseline(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "h.db") as store:
        night(store, 1, [read("a", 2), read("b", 0)])
        night(store, 2, [read("a", 2), unreachable("b", "interrupted")], interrupted=True)
        third = night(store, 3, [read("a", 2), read("b", 0)])
        assert third is not None and third.previous_scan_id == "night-01"
        assert changes(third) == NOTHING


def test_joined_and_left_follow_the_baseline_scan(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "h.db") as store:
        night(store, 1, [read("a", 2), read("b", 0)])
        second = night(store, 2, [read("b", 0), read("c", 2)])
        assert second is not None
        assert (second.joined, second.left) == (["c"], ["a"])
        assert changes(second)["new"] == [("c", "NATT-001")]
        assert changes(second)["resolved"] == []  # a left: not fixed, not closed


def test_the_floor_is_a_setting(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "h.db") as store:
        night(store, 1, [read("a", 2), read("b", 0)])
        night(store, 2, [unreachable("a"), unreachable("b")])
        at_zero = store.baseline_scan(INV, current="x", started_at="2026-11-03T01:00:00Z", min_coverage=0.0)
        at_half = store.baseline_scan(INV, current="x", started_at="2026-11-03T01:00:00Z", min_coverage=0.5)
        assert (at_zero and at_zero.id, at_half and at_half.id) == ("night-02", "night-01")
