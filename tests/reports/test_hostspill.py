"""HostSpill/SpilledHosts: a scan's hosts on disk render, store and drift exactly like hosts in memory."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from reports.build import ReportAssembly
from reports.hosts import HostBuffer, Hosts, MemoryHosts, Report, host_order_key, host_sort_key
from reports.hostspill import HostSpill
from reports.model import HostReport
from scanner.core.formats import Format
from scanner.core.results import Status, host_identity
from scanner.core.semantics import assess
from scanner.history.drift import by_identity, compute_drift, drift_between
from scanner.history.store import SqliteStore
from tests.support.sample_report import SCAN, SOURCES, make_sample_report, rendered, sample_inputs, with_hosts
from tests.support.sample_report import target as sample_target


@pytest.fixture
def spilled() -> Iterator[tuple[Report, Report]]:
    """Yield the sample report twice: hosts in memory, and the same hosts spilled (added shuffled)."""
    report = make_sample_report()
    observations, results = sample_inputs()
    random.Random(7).shuffle(observations)
    spill = HostSpill()
    try:
        assembly = ReportAssembly(spill)
        for observation in observations:
            assembly.add(observation, results.get(observation.target.name, ()), setting=assess(observation))
        assert assembly.header(SCAN, tool_version="0.1.0", inventory_sources=SOURCES) == report.header
        yield report, Report(report.header, assembly.hosts())
    finally:
        spill.close()


def test_spilled_hosts_render_the_same_json_and_console(spilled: tuple[Report, Report]) -> None:
    memory, lazy = spilled
    assert len(lazy.hosts) == len(memory.hosts) > 3
    assert list(lazy.hosts) == list(memory.hosts)
    assert rendered(lazy, Format.JSON) == rendered(memory, Format.JSON)
    for fmt in Format:
        assert rendered(lazy, fmt, width=120) == rendered(memory, fmt, width=120), fmt


@pytest.mark.parametrize("skip", [None, Status.PASS, Status.ERROR])
def test_both_implementations_answer_every_question_alike(spilled: tuple[Report, Report], skip: Status | None) -> None:
    memory, lazy = spilled
    implementations: list[Hosts] = [memory.hosts, lazy.hosts]
    for hosts in implementations:
        everyone = list(hosts)
        assert [h.name for h in everyone] == sorted((h.name for h in everyone), key=host_sort_key)
        assert list(hosts) == everyone  # re-iterable
        assert list(hosts.worst_first(skip=skip)) == sorted(
            (h for h in everyone if h.status is not skip), key=host_order_key
        )
        assert list(hosts.ordered(host_identity)) == sorted(everyone, key=lambda h: host_identity(h.name))
        for status in Status:
            assert hosts.count(status) == sum(h.status is status for h in everyone)
        assert hosts.read_count() == sum(h.setting is not None for h in everyone) == 13
        assert [h for h, _ in hosts.with_observations()] == everyone
    assert list(memory.hosts.with_observations()) == list(lazy.hosts.with_observations())


def test_the_same_assembly_fills_a_spill_or_memory() -> None:
    observations, results = sample_inputs()
    spill = HostSpill()
    try:
        on_disk, in_memory = ReportAssembly(spill), ReportAssembly(HostBuffer())
        for assembly in (on_disk, in_memory):
            for observation in observations:
                assembly.add(observation, results.get(observation.target.name, ()), setting=assess(observation))
        assert on_disk.header(SCAN, tool_version="0") == in_memory.header(SCAN, tool_version="0")
        assert list(on_disk.hosts().with_observations()) == list(in_memory.hosts().with_observations())
        assert list(on_disk.hosts()) == list(make_sample_report().hosts)
    finally:
        spill.close()


def test_spill_keeps_the_observation_beside_its_host() -> None:
    hosts = list(make_sample_report().hosts)
    observation = sample_inputs()[0][0]
    spill = HostSpill()
    try:
        spill.append(hosts[0], observation)
        spill.append(hosts[1], None)
        pairs = list(spill.by_name().with_observations())
        assert pairs == [(hosts[0], observation.model_dump_json()), (hosts[1], None)]
    finally:
        spill.close()


def test_streamed_drift_equals_whole_report_drift(tmp_path: Path) -> None:
    report = make_sample_report()
    hosts = list(report.hosts)
    renamed = [h.model_copy(update={"name": h.name.upper()}) for h in hosts[1:]]
    extra = hosts[0].model_copy(update={"name": sample_target("zz-new").name})
    after = with_hosts(report, sorted([*renamed, extra], key=lambda h: host_sort_key(h.name)))
    spill = HostSpill()
    try:
        for host in reversed(list(after.hosts)):
            spill.append(host, None)
        lazy = spill.by_name()
        expected = compute_drift(report, after)
        assert expected.joined and expected.left  # the case exercises both sides of the merge
        assert compute_drift(report, Report(after.header, lazy)) == expected
        got = drift_between(
            report.header.scan.id, report.header.scan.started_at, by_identity(report.hosts), by_identity(lazy)
        )
        assert got == expected
        with SqliteStore(tmp_path / "h.db") as store:
            store.record_scan(report.header, report.hosts, inventory_id="inv")
            stored = store.host_reports(report.header.scan.id, host_identity)
            scan = report.header.scan
            assert drift_between(scan.id, scan.started_at, stored, by_identity(lazy)) == expected
            loaded = store.load_report(report.header.scan.id)
            assert loaded.header == report.header
            assert list(loaded.hosts) == list(report.hosts)
    finally:
        spill.close()


class _TinyBuffer(HostSpill):
    _FLUSH_AT = 1  # every host goes to the file at once


def test_spill_reads_back_from_file_buffer_or_memory(tmp_path: Path) -> None:
    expected = list(make_sample_report().hosts.with_observations())
    assert all(raw is not None for _, raw in expected)
    observations = {o.target.name: o for o in sample_inputs()[0]}
    for spill in (_TinyBuffer(), HostSpill(), HostSpill(str(tmp_path / "missing-folder"))):
        try:
            for host, _ in expected:
                spill.append(host, observations[host.name])
            assert list(spill.by_name().with_observations()) == expected
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
    first = next(iter(make_sample_report().hosts))
    try:
        assert "keeping the host reports in memory" in caplog.text
        spill.append(first, None)
        assert spill.host(0) == first
    finally:
        spill.close()


def test_memory_hosts_keep_the_order_they_are_given() -> None:
    hosts = list(make_sample_report().hosts)[::-1]
    memory = MemoryHosts.of(hosts)
    assert list(memory) == hosts  # a report read from a file keeps the file's order
    assert list(memory.with_observations()) == [(h, None) for h in hosts]


def test_hosts_are_read_from_the_spill_only_when_used(spilled: tuple[Report, Report]) -> None:
    memory, lazy = spilled
    spill_hosts = lazy.hosts
    reads: list[int] = []
    spill = spill_hosts._spill  # type: ignore[attr-defined]
    original = spill.host

    def counting(index: int) -> HostReport:
        reads.append(index)
        return original(index)

    spill.host = counting
    try:
        assert spill_hosts.count(Status.PASS) == memory.hosts.count(Status.PASS) == 3
        assert spill_hosts.read_count() == 13 and len(spill_hosts) == 16
        shown = spill_hosts.worst_first(skip=Status.PASS)
        assert reads == []  # counting and ordering never read a host
        assert len(list(shown)) == 13 and len(reads) == 13  # only the rows used are read
    finally:
        del spill.host
