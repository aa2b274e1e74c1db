"""docs/reliability.md#host-supplied-text: inert on the console, neutralised in CSV, one record per line
in CEF / syslog / logs, and kept as sent in JSON."""

from __future__ import annotations

import csv
import io
import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from reports.export import syslog
from reports.export.destinations import parse_destination
from reports.findings import flatten
from reports.formats import cef, csv_report
from reports.hosts import Report, parse_report
from scanner.collect.collector import collect_host
from scanner.core.formats import Format
from scanner.core.models import CollectOptions
from scanner.core.sanitize import csv_cell
from tests.peers.hostile_lab import (
    CREDS,
    FORBIDDEN_ON_TERMINAL,
    FORMULAS,
    HOSTILE,
    MARKUP,
    SIEM_RAW,
    SIEM_TEXT,
    TEXT_HOSTS,
    Scanned,
    write_inventory,
)
from tests.peers.pki import Pki
from tests.peers.rawserver import (
    CREDENTIALS,
    RawServer,
    envelope,
    fault_body,
    http,
    normal_reply,
    os_body,
    winrm_handler,
)
from tests.support.cefparse import parse as parse_cef
from tests.support.cefparse import shown
from tests.support.cliproc import natt_audit
from tests.support.sample_report import rendered
from tests.support.syslogparse import parse_syslog

SGR = re.compile(r"\x1b\[[0-9;]*m")  # the only escape sequences rich itself writes with --color always
# XML 1.0 section 2.11 turns a literal CR into LF on the way in; everything else arrives as sent.
AS_PARSED = HOSTILE.replace("\r", "\n")


@pytest.fixture(scope="module")
def consoles(scanned: Scanned, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    work = tmp_path_factory.mktemp("console")
    inventory = write_inventory(work / "hosts.yaml", scanned.lab, sorted(TEXT_HOSTS))
    out = {}
    for color in ("always", "never"):
        proc = natt_audit("scan", "-i", str(inventory), "--color", color, "--host-timeout", "3", env=CREDS)
        assert proc.returncode == 1, proc.stderr  # every text host fails a rule, so its text is shown
        out[color] = proc.stdout.decode("utf-8")
        out[color + "-stderr"] = proc.stderr.decode("utf-8")
    return out


@pytest.mark.parametrize("color", ["always", "never"])
def test_console_carries_no_control_from_the_host(consoles: dict[str, str], color: str) -> None:
    text = consoles[color]
    assert "t-caption" in text and "t-sz" in text  # the hostile rows are there
    assert "\x1b" not in SGR.sub("", text), "an escape sequence other than rich's own colours"
    for bad in ("\x1b[2J", "\x1b[31mHACKED", "\x1b]", "\x1b\\"):
        assert bad not in text
    for char in FORBIDDEN_ON_TERMINAL:
        assert char not in text, repr(char)
    assert "\\x1b[31mHACKED" in text  # shown, escaped: the analyst sees what the host sent
    assert "\\u202e" in text and "\\x9b" in text
    assert "[/]\\nPASS fake-row" in text  # the host's newline is shown, not obeyed
    assert not any(line.lstrip("│ ").startswith("PASS fake-row") for line in SGR.sub("", text).splitlines())
    if color == "never":
        assert "\x1b" not in text


@pytest.mark.parametrize("color", ["always", "never"])
def test_console_shows_markup_literally(consoles: dict[str, str], color: str) -> None:
    plain = SGR.sub("", consoles[color])
    assert "[bold red]PASS[/]" in plain
    assert "[link=https://evil.invalid]click[/link]" in plain
    assert "\x1b]8;" not in consoles[color]  # no terminal hyperlink was made from host markup


def test_stderr_and_logs_carry_no_control_from_the_host(scanned: Scanned, consoles: dict[str, str]) -> None:
    for stream in (scanned.proc.stderr.decode("utf-8"), consoles["always-stderr"], consoles["never-stderr"]):
        assert "\x1b" not in stream and all(c not in stream for c in FORBIDDEN_ON_TERMINAL)
        for line in stream.splitlines():
            assert line.startswith("natt-audit") or line.strip() == "" or "\r" in line, line


def test_json_keeps_the_text(scanned: Scanned) -> None:
    hosts = scanned.hosts
    assert hosts["t-caption"]["os"]["caption"] == AS_PARSED
    assert hosts["t-sz"]["setting"]["raw_value"] == AS_PARSED
    assert hosts["t-multi"]["setting"]["raw_value"] == [AS_PARSED, *FORMULAS]
    assert hosts["t-formula"]["os"]["caption"] == FORMULAS[0]
    assert hosts["t-markup"]["os"]["caption"] == MARKUP
    # ... and the file is still one valid JSON document, with the controls escaped inside strings.
    assert b"\x1b" not in scanned.report_bytes


def test_forbidden_character_references_survive_as_replacements(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    caption = "&#xD800;&#xFFFE;&#x1B;[31mX&#x0;&#x110000;&#x85;"

    def reply(req, n):  # type: ignore[no-untyped-def]
        if req.action.endswith("/Enumerate"):
            return http(200, envelope(req.message_id, os_body(caption)))
        return normal_reply(req)

    with RawServer(winrm_handler(reply), tls=pki.server_context()) as server:
        obs = collect_host(server.target(), CREDENTIALS, CollectOptions(host_timeout=3, ca_bundle=str(pki.ca)))
    assert obs.error is None, obs.error
    assert obs.os is not None and obs.os.caption == "\ufffd\ufffd\x1b[31mX\x00\ufffd\x85"


# ---- exports (built by another helper: exercised at function level from the same report) ---------


@pytest.fixture(scope="module")
def text_report(scanned: Scanned) -> Report:
    data: dict[str, Any] = json.loads(scanned.report_bytes)
    data["hosts"] = [h for h in data["hosts"] if h["name"] in TEXT_HOSTS]
    return parse_report(json.dumps(data))


def test_csv_cells_are_neutralised(text_report: Report) -> None:
    out = io.StringIO()
    csv_report.render(text_report.header, text_report.hosts, out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    header, body = rows[0], rows[1:]
    assert len(body) == len(list(flatten(*text_report)))  # one row per finding, newlines inside cells quoted
    for row in body:
        assert len(row) == len(header)
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r", "\n")), cell
    captions = [row[header.index("os_caption")] for row in body]
    assert "'" + FORMULAS[0] in captions


def test_cef_and_syslog_stay_one_record_each(text_report: Report) -> None:
    findings = list(flatten(*text_report))
    out = io.StringIO()
    cef.render(text_report.header, text_report.hosts, out)
    lines = out.getvalue().split("\n")
    assert lines[-1] == "" and len(lines) - 1 == len(findings)
    for line, finding in zip(lines, findings, strict=False):
        assert line.startswith("CEF:0|") and "\r" not in line
        # Host text holding " key=value" or "|" must not forge an extension key or a header field.
        ext = re.sub(r"\\.", "", line).split("|", 7)[7]
        assert re.findall(r"(?:^| )([A-Za-z0-9_]+)=", ext) == [k for k, _ in cef.extension(finding)]
    for finding in findings:
        message = syslog.format_message(finding, hostname="scanner")
        assert b"\n" not in message and b"\r" not in message
        assert message.startswith(b"<")


def test_hostile_fault_text_is_inert_in_console_and_json_logs(tmp_path: Path) -> None:
    """A host's SOAP fault text (ESC, OSC, bidi, markup, newlines) ends up in the error message."""
    pki = Pki(tmp_path / "pki")
    text = HOSTILE.replace("&", "&amp;").replace("<", "&lt;").replace("\x1b", "&#x1B;").replace("\x07", "&#x7;")

    def reply(req, n):  # type: ignore[no-untyped-def]
        return http(500, envelope(req.message_id, fault_body("2150858752", text)))

    with RawServer(winrm_handler(reply), tls=pki.server_context()) as server:
        inventory = tmp_path / "hosts.yaml"
        inventory.write_text(
            f"hosts:\n  - {{name: rawhost.test, address: 127.0.0.1, port: {server.port}, scheme: https, "
            "transport: basic}\n",
            encoding="utf-8",
        )
        common = ["scan", "-i", str(inventory), "--ca-bundle", str(pki.ca), "--host-timeout", "3"]
        runs = {
            color: natt_audit("-v", *common, "--color", color, "--log-format", "json", env=CREDS)
            for color in ("always", "never")
        }
        out = tmp_path / "r.json"
        natt_audit(*common, "-f", "json", "-o", str(out), env=CREDS)
    message = json.loads(out.read_text(encoding="utf-8"))["hosts"][0]["error"]["message"]
    assert "\x1b[31mHACKED" in message and "[bold red]PASS[/]" in message  # JSON keeps it
    for color, proc in runs.items():
        stdout = proc.stdout.decode("utf-8")
        assert "wmi_class" in stdout or "2150858752" in stdout, stdout
        assert "\x1b" not in SGR.sub("", stdout) and "\\x1b[31mHACKED" in stdout, color
        assert all(c not in stdout for c in FORBIDDEN_ON_TERMINAL)
        for line in proc.stderr.decode("utf-8").splitlines():
            if line.strip():
                record = json.loads(line)  # one JSON record per line, whatever the host sent
                assert "\x1b" not in line and isinstance(record, dict)


# ---- SIEM exports of one host whose caption and REG_SZ data hold ESC, BEL, NUL, C1 and RLO -------


@pytest.fixture(scope="module")
def siem_report(scanned: Scanned) -> Report:
    data: dict[str, Any] = json.loads(scanned.report_bytes)
    data["hosts"] = [h for h in data["hosts"] if h["name"] == "t-siem"]
    report = parse_report(json.dumps(data))
    host = next(iter(report.hosts))
    # The text came through the lab, WinRM and the collector unchanged: the exports get it raw.
    assert host.os is not None and host.os.caption == SIEM_TEXT
    assert host.setting is not None and host.setting.raw_value == SIEM_TEXT
    return report


def assert_no_raw_control(text: str) -> None:
    """Fail if any of ESC, BEL, NUL, U+009B or U+202E is in `text` as itself."""
    assert [f"U+{ord(c):04X}" for c in SIEM_RAW if c in text] == []


def test_csv_export_spells_host_controls_out(siem_report: Report) -> None:
    text = rendered(siem_report, Format.CSV)
    assert_no_raw_control(text)
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    findings = list(flatten(siem_report.header, siem_report.hosts))
    assert len(body) == len(findings) and len(text.splitlines()) == len(rows)
    for row in body:
        assert row[header.index("os_caption")] == csv_cell(SIEM_TEXT)
        assert row[header.index("observed")] == csv_cell(SIEM_TEXT)
    assert "siem \\x1b[31mESC\\x1b[0m \\x07BEL \\x00NUL \\x9b2J C1 \\u202eRTL" in text


def test_cef_export_spells_host_controls_out(siem_report: Report) -> None:
    text = rendered(siem_report, Format.CEF)
    assert_no_raw_control(text)
    lines = text.removesuffix("\n").split("\n")
    assert len(lines) == len(list(flatten(siem_report.header, siem_report.hosts)))
    for line in lines:
        _header, ext = parse_cef(line)  # strictly valid CEF
        assert ext["flexString2"] == ext["cs6"] == shown(SIEM_TEXT)
        assert "\\x1b[31mESC" in ext["cs6"] and "\\u202eRTL" in ext["cs6"]


@pytest.mark.parametrize("payload", ["cef", "json"])
def test_syslog_export_on_the_wire_spells_host_controls_out(siem_report: Report, payload: str) -> None:
    findings = list(flatten(siem_report.header, siem_report.hosts))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        port = receiver.getsockname()[1]
        sender = syslog.SyslogSender(
            parse_destination(f"syslog+udp://127.0.0.1:{port}?format={payload}&max_size=8192"), hostname="scanner"
        )
        acked: list[str] = []
        assert sender.deliver(findings, acked.extend) is None
        datagrams = [receiver.recv(65535) for _ in findings]
    assert len(acked) == len(findings)
    for datagram in datagrams:
        message = datagram.decode("utf-8")
        assert_no_raw_control(message)
        if payload == "cef":
            assert parse_syslog(message)["cef"]["flexString2"] == shown(SIEM_TEXT)  # type: ignore[index]
        else:
            record = json.loads(message.split("] ", 1)[1])  # the SD holds no `] `: only ids and names
            assert record["os_caption"] == SIEM_TEXT  # JSON escapes keep the text exactly


def test_jsonl_export_escapes_host_controls_and_keeps_the_text(siem_report: Report) -> None:
    text = rendered(siem_report, Format.JSONL)
    assert_no_raw_control(text)
    records = [json.loads(line) for line in text.splitlines()]
    assert len(records) == len(list(flatten(siem_report.header, siem_report.hosts)))
    for record in records:
        assert record["os_caption"] == SIEM_TEXT and record["raw_value"] == SIEM_TEXT
