"""Syslog delivery checked by a real rsyslogd: UDP, TCP (octet counting) and TLS with a test CA."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reports.export.destinations import parse_destination
from reports.export.ship import export_report, ship
from reports.export.spool import Spool
from reports.export.syslog import (
    SYSLOG_SEVERITY,
    SyslogSender,
    fit_datagram,
    format_message,
    octet_frame,
    sd_escape,
)
from reports.findings import Finding, flatten
from reports.hosts import Report
from scanner.core.models import HostError, OsInfo, Stage
from tests.peers.receivers import Rsyslog
from tests.support.cefparse import shown
from tests.support.sample_report import make_sample_report, with_hosts
from tests.support.syslogparse import parse_sd, parse_syslog

HOSTILE = 'evil\nhost|a=b\\c]d"e\r\x1b[31mred\x07\x7f\x85\u202e tail\\'


def hostile_report() -> Report:
    """Return the sample report plus a host whose every text field is hostile."""
    report = make_sample_report()
    base = next(h for h in report.hosts if h.name == "srv-pass-01")
    evil = base.model_copy(
        update={
            "name": "srv-" + HOSTILE,
            "os": OsInfo(version="10.0.19045", caption="cap " + HOSTILE),
            "error": HostError(stage=Stage.PARSE, reason="soap_fault", message="err " + HOSTILE),
            "results": [r.model_copy(update={"message": "msg " + HOSTILE}) for r in base.results],
        }
    )
    return with_hosts(report, [*report.hosts, evil])


@pytest.fixture(scope="module")
def findings() -> list[Finding]:
    """Return the findings of the hostile report."""
    return list(flatten(*hostile_report()))


def _check_received(lines: list[str], findings: list[Finding]) -> None:
    by_id = {f.event_uid: f for f in findings}
    parsed = [parse_syslog(line) for line in lines]
    counts = Counter(p["sd"]["id"] for p in parsed)  # type: ignore[index]
    assert set(counts) == set(by_id), "some finding did not arrive"
    assert max(counts.values()) == 1, "a finding arrived twice"
    for p in parsed:
        sd = p["sd"]
        assert isinstance(sd, dict)
        f = by_id[sd["id"]]
        assert p["app"] == "natt-audit" and p["msgid"] == f.rule_id and p["sd_id"] == "natt@32473"
        assert int(str(p["pri"])) == 13 * 8 + SYSLOG_SEVERITY[f.severity]
        assert sd["host"] == shown(f.host) and sd["finding"] == f.finding_uid and sd["scan"] == f.scan_id
        cef = p["cef"]
        assert isinstance(cef, dict)
        assert cef["externalId"] == f.event_uid
        assert cef["dhost"] == shown(f.host) and cef["msg"] == shown(f.message)
        if f.os_caption is not None:
            assert cef["flexString2"] == shown(f.os_caption)
        if f.error_message is not None:
            assert cef["reason"].endswith(shown(f.error_message))


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_rsyslog_receives_each_finding_once_intact(
    rsyslog: Rsyslog, findings: list[Finding], transport: str
) -> None:
    port = {"udp": rsyslog.udp_port, "tcp": rsyslog.tcp_port, "tls": rsyslog.tls_port}[transport]
    extra = f"?ca={rsyslog.ca}" if transport == "tls" else ""
    dest = parse_destination(f"syslog+{transport}://127.0.0.1:{port}{extra}")
    acked: list[str] = []
    assert SyslogSender(dest, hostname="scanner01").deliver(findings, acked.extend) is None
    assert sorted(acked) == sorted(f.event_uid for f in findings)
    lines = rsyslog.records(transport, len(findings))
    _check_received(lines, findings)
    assert any("evil\\nhost|a\\=b\\\\c]d" in line for line in lines)  # CEF-escaped, one record


def test_tls_refuses_an_unknown_ca(rsyslog: Rsyslog, findings: list[Finding], tmp_path: Path) -> None:
    dest = parse_destination(f"syslog+tls://127.0.0.1:{rsyslog.tls_port}?timeout=2&retries=2")
    acked: list[str] = []
    sender = SyslogSender(dest, hostname="scanner01", sleep=lambda _s: None)
    error = sender.deliver(findings[:2], acked.extend)  # system CA store: the test CA is unknown
    assert error is not None and "CERTIFICATE_VERIFY_FAILED" in error
    assert acked == []


def test_down_syslog_leaves_everything_spooled_then_ship_delivers(
    tmp_path: Path, findings: list[Finding]
) -> None:
    receiver = Rsyslog(tmp_path / "late")  # not started yet: its TCP port refuses connections
    dest = parse_destination(
        f"syslog+tcp://127.0.0.1:{receiver.tcp_port}?timeout=2&retries=2&backoff_cap=0.1"
    )
    report = hostile_report()
    spool_dir = tmp_path / "spool"
    summary = export_report(report.header, report.hosts, [dest], spool_dir)
    assert summary.exit_code == 5 and not summary.complete
    (outcome,) = summary.destinations
    assert outcome.pending == len(findings) and outcome.delivered == 0 and outcome.error
    assert len(Spool(spool_dir).pending(dest, report.header.scan.id)) == len(findings)
    try:
        receiver.start()
        shipped = ship(spool_dir)  # destinations come from the spool state
        assert shipped.exit_code == 0, shipped.lines()
        assert shipped.destinations[0].delivered == len(findings)
        _check_received(receiver.records("tcp", len(findings)), findings)
        again = ship(spool_dir, [dest])
        assert again.destinations[0].already == len(findings) and again.destinations[0].delivered == 0
    finally:
        receiver.stop()


def test_udp_caps_the_datagram_and_keeps_the_id(findings: list[Finding]) -> None:
    long = findings[0].model_copy(update={"message": "x\\" * 3000})
    message = format_message(long, hostname="h")
    cut = fit_datagram(message, 2048)
    assert len(cut) <= 2048 and len(message) > 2048
    assert long.event_uid.encode() in cut
    assert not cut.endswith(b"\\") or cut.endswith(b"\\\\")
    assert fit_datagram("é".encode() * 2000, 2047).decode("utf-8")  # never half a character


def test_octet_counting_frame() -> None:
    assert octet_frame(b"<14>1 - - - - - - x") == b"19 <14>1 - - - - - - x"
    assert octet_frame("é".encode()) == b"2 \xc3\xa9"  # octets, not characters


@given(st.text(max_size=80))
def test_sd_escape_round_trips(value: str) -> None:
    escaped = sd_escape(value)
    assert "\n" not in escaped and "\r" not in escaped
    sd_id, params, _end = parse_sd(f'[natt@32473 v="{escaped}"]', 0)
    assert params == {"v": shown(value)} and sd_id == "natt@32473"


def test_message_never_holds_a_raw_newline(findings: list[Finding]) -> None:
    for f in findings:
        message = format_message(f, hostname="host\nname", payload="json")
        assert b"\n" not in message and b"\r" not in message
        assert b" host_name natt-audit - " in message
