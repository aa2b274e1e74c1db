"""The SQLite history store: WAL, schema version with forward migrations, atomic scan writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reports.hosts import MemoryHosts, Report
from reports.model import ReportDocument
from scanner.collect.remediate import ActionKind, ActionResult, Outcome
from scanner.core.models import RegistryValue
from scanner.history.applylog import ApplyRun, HostRecord, Verdict
from scanner.history.schema import SCHEMA_VERSION
from scanner.history.store import SqliteStore, StoreError, compliance_of
from tests.support.nightly_helpers import read, report, unreachable, with_scan

INV = "path:/srv/inventory.yaml"


def test_record_list_load_and_find(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    first = report([read("a", 0), read("b", 2), unreachable("c")], started="2026-11-25T01:00:00Z")
    second = report([read("a", 0), read("b", 0), read("c", 1)], started="2026-11-26T01:00:00Z")
    obs = [read("a", 0), read("b", 0), read("c", 1)]  # the raw facts each host of `second` carries
    with SqliteStore(db) as store:
        store.record_scan(first.header, first.hosts, inventory_id=INV)
        store.record_scan(second.header, second.hosts, inventory_id=INV)
        other = report([read("z", 0)])
        store.record_scan(other.header, MemoryHosts.of(other.hosts), inventory_id="other")  # no observations
        assert store.schema_version() == SCHEMA_VERSION
        rows = store.scans(inventory_id=INV)
        first_id, second_id = first.header.scan.id, second.header.scan.id
        assert [r.id for r in rows] == [second_id, first_id]  # newest first
        assert rows[1].by_status["error"] == 1 and rows[1].coverage == pytest.approx(0.6666)
        assert rows[0].compliance == 1.0
        loaded = store.load_report(second_id)
        assert loaded.header == second.header and list(loaded.hosts) == list(second.hosts)
        assert store.find_scan(second_id[:8]).id == second_id
        with pytest.raises(StoreError, match="no scan"):
            store.find_scan("zzzz")
        prev = store.previous_report(INV, before=second_id)
        assert prev is not None and prev.header.scan.id == first_id
        assert store.observations(second_id) == sorted(obs, key=lambda o: o.target.name)
        assert store.observations(other.header.scan.id) == []
        assert store.result_count(second_id) == 9
        assert {h.name: h.effective_mode for h in store.hosts(first_id)} == {
            "a": "0",
            "b": "2",
            "c": None,
        }
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_interrupted_scans_are_no_baseline_and_a_resume_replaces_the_row(tmp_path: Path) -> None:
    full = report([read("a", 0)], started="2026-11-25T01:00:00Z")
    partial = with_scan(report([read("a", 2)], started="2026-11-26T01:00:00Z"), interrupted=True)
    with SqliteStore(tmp_path / "h.db") as store:
        store.record_scan(*full, inventory_id=INV)
        store.record_scan(*partial, inventory_id=INV)
        later = report([read("a", 1)], started="2026-11-27T01:00:00Z")
        prev = store.previous_report(INV, before=later.header.scan.id)
        assert prev is not None and prev.header.scan.id == full.header.scan.id  # the partial scan is skipped
        resumed = with_scan(partial, interrupted=False)
        store.record_scan(*resumed, inventory_id=INV)
        rows = store.scans(inventory_id=INV)
        assert [(r.id, r.interrupted) for r in rows] == [
            (partial.header.scan.id, False),
            (full.header.scan.id, False),
        ]


def test_a_failed_write_leaves_nothing_half_written(tmp_path: Path) -> None:
    good = report([read("a", 0)])
    with SqliteStore(tmp_path / "h.db") as store:
        store.record_scan(*good, inventory_id=INV)
        bad = report([read("a", 0), read("b", 1)])
        # Two hosts of one name violate the hosts primary key in the middle of the transaction.
        first = next(iter(bad.hosts))
        broken = Report(bad.header, MemoryHosts.of([first, first]))
        with pytest.raises(StoreError, match="cannot write"):
            store.record_scan(*broken, inventory_id=INV)
        assert [r.id for r in store.scans()] == [good.header.scan.id]
        assert store.result_count(bad.header.scan.id) == 0


def whole_document(report: Report) -> str:
    """Return the report as one JSON document, hosts included (how schema version 1 stored it)."""
    return ReportDocument(**dict(report.header), hosts=list(report.hosts)).model_dump_json()


def test_forward_migration_keeps_data(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    SqliteStore(db, migrate_to=1).close()  # a file as the first release wrote it
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == 1
    conn.execute(
        "INSERT INTO scans VALUES ('old-scan', ?, 'inv', '2026-01-01T00:00:00Z', '2026-01-01T00:00:01Z',"
        " 0, 1, 1, 0, 0, 0, 0, 1.0, 5, '[\"baseline\"]', '0.0', ?)",
        (INV, whole_document(report([read("a", 0)], scan_id="old-scan"))),
    )
    conn.commit()
    conn.close()
    with SqliteStore(db) as store:
        assert store.schema_version() == SCHEMA_VERSION
        rows = store.scans(inventory_id=INV)
        assert [r.id for r in rows] == ["old-scan"]
        assert rows[0].compliance == 0.0  # the column added by migration 2, with its default
        old = store.load_report("old-scan")
        assert old.header.scan.id == "old-scan"
        assert [h.name for h in old.hosts] == ["a"]  # the hosts come from the report column


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    SqliteStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this natt-audit"):
        SqliteStore(db)


def test_compliance_counts_read_hosts_only() -> None:
    r = report([read("a", 0), read("b", 2), unreachable("c"), read("d", 1)])
    assert compliance_of(r.hosts) == pytest.approx(0.6666)
    assert compliance_of(report([unreachable("x")]).hosts) == 0.0


def test_scans_started_in_the_same_second_are_ordered_by_recording(tmp_path: Path) -> None:
    # Two quick scans share started_at and recorded_at (one-second resolution); the one recorded
    # last is the newest, whatever their random ids, so `diff` compares them the right way round.
    same = "2026-11-25T01:00:00Z"
    scans = [report([read("a", n % 3)], started=same) for n in range(6)]
    with SqliteStore(tmp_path / "h.db") as store:
        for scan in scans:
            store.record_scan(scan.header, scan.hosts, inventory_id=INV)
        assert [r.id for r in store.scans(inventory_id=INV)] == [s.header.scan.id for s in reversed(scans)]
        prev = store.previous_scan(INV, before=scans[-1].header.scan.id)
        assert prev is not None and prev.id == scans[-2].header.scan.id


def test_an_apply_is_recorded_step_by_step_and_a_version_3_file_gains_the_tables(tmp_path: Path) -> None:
    db = tmp_path / "v3.db"
    with SqliteStore(db, migrate_to=3) as old:
        old.record_scan(*report([read("a", 2)], scan_id="before-apply"), inventory_id=INV)
    stray = RegistryValue(name="AssumeUDPEncapsulationContextOnSendRule", type="REG_SZ", data="1'; DROP TABLE x; --")
    steps = [
        ActionResult(action=ActionKind.DELETE_VALUE, what="HKLM\\...\\IPsec\\v", before=stray, after=None,
                     result=Outcome.DONE),
        ActionResult(action=ActionKind.RESTART_SERVICE, what="service PolicyAgent", before="Running", after="Stopped",
                     result=Outcome.FAILED, reason="service_start_failed", message="StartService returned 7"),
    ]
    run = ApplyRun(id="run-1", tool_version="0.1.0", report="r.json", report_scan_id="before-apply",
                   report_finished_at="2026-01-01T00:00:01Z", started_at="2026-01-01T01:00:00Z",
                   finished_at="2026-01-01T01:00:05Z", verified=True, exit_code=3,
                   hosts=[HostRecord(name="a", address="192.0.2.1", port=5985, rules=["NATT-003"], actions=steps,
                                     verdict=Verdict.UNVERIFIED, detail="not in force")],
                   left_out=[])
    with SqliteStore(db) as store:
        assert store.schema_version() == SCHEMA_VERSION == 5  # 4: the journal key, 5: the apply log
        assert [r.id for r in store.scans(inventory_id=INV)] == ["before-apply"]
        store.record_apply(run)
        assert store.applies() == [run]  # the host-supplied text is data, read back as written
        assert store.apply_actions("run-1") == [
            ("a", 1, "delete_value", "done", None), ("a", 2, "restart_service", "failed", "service_start_failed")
        ]
        with pytest.raises(StoreError):
            store.record_apply(run)  # one run, one record: the same id again is refused, nothing half-written
        assert len(store.apply_actions("run-1")) == 2
