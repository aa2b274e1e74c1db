"""The spool (atomic, durable, per-destination state), DEST parsing and the export/ship commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reports.export.destinations import DestinationError, Kind, parse_destination
from reports.export.spool import Spool
from reports.findings import Finding, flatten
from reports.hosts import Report
from scanner.cli.main import main
from scanner.core.formats import Format
from tests.peers.receivers import TOKEN, Rsyslog
from tests.support.sample_report import make_sample_report, rendered


def findings_of(report: Report) -> list[Finding]:
    """Return the flattened report."""
    return list(flatten(report.header, report.hosts))


def test_spool_round_trip_and_pending(tmp_path: Path) -> None:
    report = make_sample_report()
    findings = findings_of(report)
    spool = Spool(tmp_path)
    path = spool.write_scan(report.header.scan.id, findings)
    assert spool.load(report.header.scan.id) == findings
    assert spool.scan_ids() == [report.header.scan.id]
    assert not list(path.parent.glob(".*.tmp"))
    dest = parse_destination("syslog+tcp://127.0.0.1:9")
    spool.mark(dest, report.header.scan.id, [findings[0].event_uid])
    spool.mark(dest, report.header.scan.id, [findings[1].event_uid], dead=True)
    with (tmp_path / "state" / dest.key / f"{report.header.scan.id}.acks").open("a") as handle:
        handle.write("A " + findings[2].event_uid[:20])  # a line cut by a crash
    assert [f.event_uid for f in spool.pending(dest, report.header.scan.id)] == [f.event_uid for f in findings[2:]]


def test_disk_full_keeps_the_previous_spool_file(tmp_path: Path) -> None:
    report = make_sample_report()
    spool = Spool(tmp_path)
    path = spool.write_scan(report.header.scan.id, findings_of(report)[:1])
    before = path.read_bytes()
    # A child process whose files may not grow past 4 KB: the write fails like a full disk.
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "from reports.export.spool import Spool, SpoolError\n"
        "from reports.findings import flatten\n"
        "from tests.support.sample_report import make_sample_report\n"
        "r = make_sample_report()\n"
        "try:\n"
        f"    Spool({str(tmp_path)!r}).write_scan(r.header.scan.id, list(flatten(*r)))\n"
        "except SpoolError as exc:\n"
        "    print('SpoolError', exc); sys.exit(7)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parents[3],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 7, done.stderr
    assert "cannot write the spool file" in done.stdout
    assert path.read_bytes() == before
    assert not list(path.parent.glob(".*.tmp"))


def test_destination_forms() -> None:
    assert parse_destination("out/findings.cef").kind is Kind.FILE
    assert parse_destination("file:out.csv").path == "out.csv"
    udp = parse_destination("syslog+udp://127.0.0.1:514")
    assert (udp.kind, udp.host, udp.port) == (Kind.SYSLOG_UDP, "127.0.0.1", 514)
    tls = parse_destination("syslog+tls://[::1]:6514?ca=/etc/ca.pem&format=json")
    assert (tls.host, tls.ca_file, tls.payload) == ("::1", "/etc/ca.pem", "json")
    hec = parse_destination("hec+https://127.0.0.1:8088?ack=1&index=main")
    assert hec.ack and hec.index == "main" and hec.batch_bytes == 1_000_000
    for bad in (
        "ftp://127.0.0.1:21",
        "syslog+tcp://127.0.0.1",
        "syslog+tcp://127.0.0.1:99999",
        "syslog+tcp://127.0.0.1:514/path",
        "syslog+udp://127.0.0.1:514?ca=x",
        "hec+https://127.0.0.1:8088?bogus=1",
        "hec+https://127.0.0.1:8088?batch_bytes=2000000",
        " spaced",
    ):
        with pytest.raises(DestinationError):
            parse_destination(bad)


@given(st.text(max_size=60))
def test_destination_parser_only_raises_destination_error(text: str) -> None:
    message = ""
    try:
        parse_destination(text)
    except DestinationError as exc:
        message = str(exc)
    assert "\n" not in message


def _run(argv: list[str]) -> int:
    return main(argv)


def test_export_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = make_sample_report()
    source = tmp_path / "report.json"
    source.write_text(rendered(report, Format.JSON), encoding="utf-8")
    assert _run(["export", str(source), "-f", "cef"]) == 0
    assert capsys.readouterr().out.count("CEF:0|") == len(findings_of(report))
    target = tmp_path / "out.html"
    assert (
        _run(["export", str(source), "-f", "html", "--to", str(target), "--spool", str(tmp_path / "s")]) == 0
    )
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert _run(["export", str(source), "-f", "cef", "--to", f"hec+https://127.0.0.1:1?token={TOKEN}"]) == 2
    err = capsys.readouterr().err
    assert "NATT_AUDIT_HEC_TOKEN" in err and TOKEN not in err
    (tmp_path / "bad.json").write_text("{}")
    assert _run(["export", str(tmp_path / "bad.json"), "-f", "csv"]) == 2


def test_ship_cli_reports_pending_and_delivers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = make_sample_report()
    source = tmp_path / "report.json"
    source.write_text(rendered(report, Format.JSON), encoding="utf-8")
    receiver = Rsyslog(tmp_path / "rs")
    dest = f"syslog+tcp://127.0.0.1:{receiver.tcp_port}?retries=1"
    spool = str(tmp_path / "spool")
    assert _run(["export", str(source), "-f", "cef", "--to", dest, "--spool", spool]) == 5
    assert f"{len(findings_of(report))} pending" in capsys.readouterr().err
    receiver.start()
    try:
        assert _run(["ship", "--spool", spool]) == 0
        lines = receiver.records("tcp", len(findings_of(report)))
        assert len(lines) == len(findings_of(report))
        spooled = [json.loads(line)["event_uid"] for line in Spool(spool).scan_path(report.header.scan.id).open()]
        assert all(any(uid in line for line in lines) for uid in spooled)
    finally:
        receiver.stop()


def test_ship_sends_a_destination_only_the_scans_exported_to_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = make_sample_report()
    scan = first.header.scan.model_copy(update={"id": "11111111-2222-4333-8444-555555555555"})
    second = Report(first.header.model_copy(update={"scan": scan}), first.hosts)
    spool = str(tmp_path / "spool")
    for name, report in (("first.json", first), ("second.json", second)):
        (tmp_path / name).write_text(rendered(report, Format.JSON), encoding="utf-8")
    # The first scan goes to a file only; the second to syslog, which is down.
    assert (
        _run(["export", str(tmp_path / "first.json"), "-f", "cef", "--to", str(tmp_path / "f.cef"), "--spool", spool])
        == 0
    )
    receiver = Rsyslog(tmp_path / "rs")
    dest = f"syslog+tcp://127.0.0.1:{receiver.tcp_port}?retries=1"
    assert _run(["export", str(tmp_path / "second.json"), "-f", "cef", "--to", dest, "--spool", spool]) == 5
    capsys.readouterr()
    receiver.start()
    try:
        assert _run(["ship", "--spool", spool]) == 0
        err = capsys.readouterr().err
        count = len(findings_of(second))
        assert f"{count} delivered, 0 already delivered, 0 pending" in err
        lines = receiver.records("tcp", count)
        assert len(lines) == count
        assert not any(f.event_uid in line for f in findings_of(first) for line in lines)
    finally:
        receiver.stop()
