"""HostSpill/HostList: a streamed report renders, stores and drifts exactly like an in-memory one."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from reports.build import host_sort_key
from reports.formats.console import render_console
from reports.formats.json_report import render_json
from reports.hostspill import HostList, HostSpill
from reports.model import ScanReport
from scanner.core.results import Status, host_identity
from scanner.history.drift import by_identity, compute_drift, drift_between
from scanner.history.store import SqliteStore
from tests.support.sample_report import make_sample_report
from tests.support.sample_report import target as sample_target


def spilled(report: ScanReport) -> tuple[ScanReport, HostSpill]:
    """Return `report` with its hosts moved to a spill, appended in reverse (not report) order."""
    spill = HostSpill()
    for host in reversed(report.hosts):
        spill.append(host, None)
    lazy = ScanReport.model_construct(**{**dict(report), "hosts": spill.by_name(host_sort_key)})
    return lazy, spill


def test_spilled_report_renders_the_same_json_and_console() -> None:
    report = make_sample_report()
    lazy, spill = spilled(report)
    try:
        assert isinstance(lazy.hosts, HostList) and len(lazy.hosts) == len(report.hosts) > 3
        assert list(lazy.hosts) == report.hosts and lazy.hosts == report.hosts
        assert lazy.hosts[0] == report.hosts[0] and lazy.hosts[-1] == report.hosts[-1]
        assert lazy.hosts[1:3] == report.hosts[1:3]
        assert render_json(lazy) == render_json(report)
        for limit in (0, 20):
            assert render_console(lazy, color=False, max_pass_rows=limit) == render_console(
                report, color=False, max_pass_rows=limit
            )
        assert lazy.hosts.count_status(Status.PASS) == sum(h.status is Status.PASS for h in report.hosts)
    finally:
        spill.close()


def test_spill_keeps_the_observation_beside_its_host() -> None:
    report = make_sample_report()
    spill = HostSpill()
    try:
        spill.append(report.hosts[0], '{"x": 1}')
        spill.append(report.hosts[1], None)
        pairs = list(spill.by_name(host_sort_key).with_observations())
        assert pairs == [(report.hosts[0], '{"x": 1}'), (report.hosts[1], None)]
    finally:
        spill.close()


def test_streamed_drift_equals_whole_report_drift(tmp_path: Path) -> None:
    report = make_sample_report()
    renamed = [h.model_copy(update={"name": h.name.upper()}) for h in report.hosts[1:]]
    extra = report.hosts[0].model_copy(update={"name": sample_target("zz-new").name})
    after = report.model_copy(update={"hosts": sorted([*renamed, extra], key=lambda h: host_sort_key(h.name))})
    lazy, spill = spilled(after)
    try:
        expected = compute_drift(report, after)
        assert expected.joined and expected.left  # the case exercises both sides of the merge
        got = drift_between(report.scan.id, report.scan.started_at, by_identity(report.hosts), by_identity(lazy.hosts))
        assert got == expected
        with SqliteStore(tmp_path / "h.db") as store:
            store.record_scan(report, inventory_id="inv")
            stored = store.host_reports(report.scan.id, host_identity)
            assert drift_between(report.scan.id, report.scan.started_at, stored, by_identity(lazy.hosts)) == expected
            assert store.load_report(report.scan.id) == report
    finally:
        spill.close()


class _TinyBuffer(HostSpill):
    _FLUSH_AT = 1  # every host goes to the file at once


def test_spill_reads_back_from_file_buffer_or_memory(tmp_path: Path) -> None:
    hosts = make_sample_report().hosts
    for spill in (_TinyBuffer(), HostSpill(), HostSpill(str(tmp_path / "missing-folder"))):
        try:
            for host in hosts:
                spill.append(host, host.name)
            got = list(spill.by_name(host_sort_key).with_observations())
            assert got == [(h, h.name) for h in hosts]
        finally:
            spill.close()


def test_spill_without_a_temp_file_warns_and_keeps_hosts_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("natt_audit")  # setup_logging may have stopped its propagation
    logger.addHandler(caplog.handler)
    try:
        spill = HostSpill(str(tmp_path / "missing-folder"))
    finally:
        logger.removeHandler(caplog.handler)
    try:
        assert "keeping the host reports in memory" in caplog.text
        spill.append(make_sample_report().hosts[0], None)
        assert spill.host(0) == make_sample_report().hosts[0]
    finally:
        spill.close()


def test_pydantic_dump_of_a_spilled_report_keeps_every_host() -> None:
    report = make_sample_report()
    lazy, spill = spilled(report)
    try:
        assert lazy.model_dump(mode="json")["hosts"] == report.model_dump(mode="json")["hosts"]
        assert ScanReport.model_validate_json(lazy.model_dump_json()).hosts == report.hosts
    finally:
        spill.close()
