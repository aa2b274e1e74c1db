"""The real CLI against the real lab: HTTP, NTLM with message encryption, every row and fault."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.peers.lab import start_lab
from tests.support.cliproc import LAB_CREDS, run_cli

HERE = Path(__file__).parent / "data"
PASSWORD = "Lab-Passw0rd!"
HOST_TIMEOUT = "4"


natt_audit = run_cli


CREDS = LAB_CREDS


def scan_json(
    inventory: Path, out: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Scan the inventory with the real CLI, JSON report to `out`, short host deadline."""
    return natt_audit(
        "scan",
        "-i",
        str(inventory),
        "-f",
        "json",
        "-o",
        str(out),
        "--host-timeout",
        HOST_TIMEOUT,
        *extra,
        env=CREDS if env is None else env,
    )


@pytest.fixture(scope="module")
def scanned(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]]:
    work = tmp_path_factory.mktemp("e2e")
    with start_lab(HERE / "estate_scan_e2e.yaml", work) as lab:
        out = work / "report.json"
        proc = scan_json(lab.inventory, out, "--connect-timeout", "2")
        report = json.loads(out.read_text(encoding="utf-8"))
        yield proc, report, lab.inventory


def host(report: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [h for h in report["hosts"] if h["name"] == name]
    assert len(matches) == 1, name
    return matches[0]


def statuses(h: dict[str, Any]) -> dict[str, str]:
    return {r["rule_id"]: r["status"] for r in h["results"]}


# name -> (effective_mode, integrity, NATT-001, NATT-002, NATT-003)
ROWS = {
    "w10-absent": (0, "ok", "pass", "pass", "pass"),
    "w10-keyabsent": (0, "ok", "pass", "pass", "pass"),
    "w10-mode0": (0, "ok", "pass", "pass", "pass"),
    "w11-mode1": (1, "ok", "pass", "pass", "pass"),
    "w2022-mode2": (2, "ok", "fail", "pass", "pass"),
    "w10-dword3": ("unknown", "invalid_value", "fail", "fail", "pass"),
    "w10-dwordmax": ("unknown", "invalid_value", "fail", "fail", "pass"),
    "w10-sz": (0, "invalid_type", "pass", "fail", "pass"),
    "w10-expand": (0, "invalid_type", "pass", "fail", "pass"),
    "w10-qword": (0, "invalid_type", "pass", "fail", "pass"),
    "w10-binary": (0, "invalid_type", "pass", "fail", "pass"),
    "w10-multi": (0, "invalid_type", "pass", "fail", "pass"),
    "w10-stray": (0, "ok", "pass", "pass", "fail"),
    "w10-lowercase-name": (1, "ok", "pass", "pass", "pass"),
    "xp-sp3-mode1": (1, "ok", "pass", "pass", "pass"),
    "s2003-mode2": (2, "ok", "fail", "pass", "pass"),
    "s2003-stray": (0, "ok", "pass", "pass", "fail"),
    "xp-sp1-legacy": (2, "not_applicable", "fail", "not_applicable", "not_applicable"),
    "w2000": ("not_applicable", "not_applicable", "not_applicable", "not_applicable", "not_applicable"),
    "w10-chinese": (0, "ok", "pass", "pass", "pass"),
    "f-slow": (0, "ok", "pass", "pass", "pass"),
}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_every_domain_row(scanned: tuple[Any, dict[str, Any], Path], name: str) -> None:
    _, report, _ = scanned
    h = host(report, name)
    mode, integrity, r1, r2, r3 = ROWS[name]
    assert h["error"] is None, h["error"]
    assert h["setting"]["effective_mode"] == mode
    assert h["setting"]["integrity"] == integrity
    assert statuses(h) == {"NATT-001": r1, "NATT-002": r2, "NATT-003": r3}


def test_raw_values_are_shown_as_stored(scanned: tuple[Any, dict[str, Any], Path]) -> None:
    _, report, _ = scanned
    assert host(report, "w10-dwordmax")["setting"]["raw_value"] == 4294967295
    sz = host(report, "w10-sz")["setting"]
    assert (sz["raw_type"], sz["raw_value"]) == ("REG_SZ", "2")
    assert host(report, "w10-multi")["setting"]["raw_value"] == ["2"]
    assert host(report, "w10-qword")["setting"]["raw_type"] == "REG_QWORD"
    assert host(report, "w10-binary")["setting"]["raw_value"] == "02000000"
    stray = host(report, "w10-stray")["setting"]["stray"]
    assert [(s["key"].rsplit("\\", 1)[-1], s["data"]) for s in stray] == [("IPsec", 2)]
    assert host(report, "w10-chinese")["os"]["caption"] == "Microsoft Windows 10 专业版"


# fault host -> (stage, reason)
FAULTS = {
    "f-refuse": ("connect", "refused"),
    "f-blackhole": ("timeout", "deadline"),
    "f-trickle": ("timeout", "deadline"),
    "f-auth-reject": ("auth", "unauthorized"),
    "f-access-denied": ("collect", "access_denied"),
    "f-soap-fault": ("collect", "wmi_class"),
    "f-quota": ("collect", "quota"),
    "f-http-502": ("collect", "http_502"),
    "f-reset": ("connect", "reset"),
    "f-malformed": ("parse", "malformed_xml"),
    "f-xml-bomb": ("parse", "xml_forbidden"),
    "f-oversize": ("parse", "oversize"),
    "f-relatesto": ("parse", "relates_to"),
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_every_fault_is_an_error_result(scanned: tuple[Any, dict[str, Any], Path], name: str) -> None:
    _, report, _ = scanned
    h = host(report, name)
    assert h["status"] == "error"
    assert h["setting"] is None
    assert (h["error"]["stage"], h["error"]["reason"]) == FAULTS[name]
    assert {r["status"] for r in h["results"]} == {"error"}


def test_report_shape_and_exit_code(scanned: tuple[Any, dict[str, Any], Path]) -> None:
    proc, report, _ = scanned
    assert proc.returncode == 3, proc.stderr  # faults make coverage < 1.0: incomplete beats findings
    schema = json.loads(natt_audit("schema", "report").stdout)
    jsonschema.validate(report, schema)
    names = [h["name"] for h in report["hosts"]]
    assert names == sorted(names, key=lambda n: (n.lower(), n))
    total = len(ROWS) + len(FAULTS)
    assert report["summary"]["hosts_total"] == total
    assert report["summary"]["coverage"] == round(len(ROWS) / total, 4)
    assert report["summary"]["hosts_by_status"]["error"] == len(FAULTS)
    # The common path is 2 handshake POSTs + Enumerate + two GetDWORDValue calls.
    assert host(report, "w10-mode0")["requests"] <= 6
    assert PASSWORD not in proc.stdout + proc.stderr
    assert "natt-audit: scanned" in proc.stderr


def test_console_report_and_fail_on(scanned: tuple[Any, dict[str, Any], Path], tmp_path: Path) -> None:
    _, _, inventory = scanned
    proc = natt_audit(
        "scan",
        "-i",
        str(inventory),
        "--host-timeout",
        HOST_TIMEOUT,
        "--min-coverage",
        "0",
        "--fail-on",
        "critical",
        "--color",
        "never",
        env=CREDS,
    )
    assert proc.returncode == 0, proc.stderr  # nothing critical in baseline; coverage check off
    assert "w2022-mode2" in proc.stdout and "NATT-001" in proc.stdout
    proc = natt_audit(
        "scan",
        "-i",
        str(inventory),
        "--host-timeout",
        HOST_TIMEOUT,
        "--min-coverage",
        "0",
        env=CREDS,
    )
    assert proc.returncode == 1


def test_bad_inputs_exit_2_before_scanning(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.txt"
    inv.write_text("srv01\nsrv01:99999\n", encoding="utf-8")
    proc = natt_audit("scan", "-i", str(inv), env=CREDS)
    assert proc.returncode == 2
    assert f"{inv}:2" in proc.stderr
    proc = natt_audit("scan", "-i", str(inv), "--password", "x", env=CREDS)
    assert proc.returncode == 2 and "x" not in proc.stdout
    good = tmp_path / "one.txt"
    good.write_text("127.0.0.1:1\n", encoding="utf-8")
    proc = natt_audit("scan", "-i", str(good), "-p", str(tmp_path / "missing.yaml"), env=CREDS)
    assert proc.returncode == 2 and "missing.yaml" in proc.stderr


def test_wrong_password_is_auth_error_and_never_printed(
    scanned: tuple[Any, dict[str, Any], Path], tmp_path: Path
) -> None:
    _, _, inventory = scanned
    secret = "Wr0ng-S3cret-Value"
    out = tmp_path / "r.json"
    proc = scan_json(inventory, out, env={"NATT_AUDIT_USERNAME": "LAB\\auditor", "NATT_AUDIT_PASSWORD": secret})
    report = out.read_text(encoding="utf-8")
    assert secret not in proc.stdout + proc.stderr + report
    assert json.loads(report)["summary"]["coverage"] == 0.0
    assert host(json.loads(report), "w10-mode0")["error"]["stage"] == "auth"


def test_waivers_turn_failures_into_waived_and_expire(
    scanned: tuple[Any, dict[str, Any], Path], tmp_path: Path
) -> None:
    _, _, inventory = scanned
    today = dt.datetime.now(dt.UTC).date()
    soon, past, later = (
        today + dt.timedelta(days=5),
        today - dt.timedelta(days=1),
        today + dt.timedelta(days=90),
    )
    waivers = tmp_path / "waivers.yaml"
    waivers.write_text(
        "waivers:\n"
        f"  - {{id: W-PILOT, rules: [NATT-001], hosts: {{names: [w2022-mode2]}}, justification: L2TP pilot,"
        f" owner: net, ticket: CHG-1, expires: {soon}}}\n"
        f"  - {{id: W-OLD, rules: [NATT-001], hosts: {{glob: 's2003-*'}}, justification: old, expires: {past}}}\n"
        f"  - {{id: W-NONE, rules: [NATT-003], hosts: {{names: [nope]}}, justification: x, expires: {later}}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "r.json"
    proc = scan_json(inventory, out, "--waivers", str(waivers))
    report = json.loads(out.read_text(encoding="utf-8"))
    pilot = next(r for r in host(report, "w2022-mode2")["results"] if r["rule_id"] == "NATT-001")
    assert pilot["status"] == "waived"
    assert pilot["waiver"]["label"] == "W-PILOT" and pilot["waiver"]["state"] == "applied"
    assert "effective_mode=2" in pilot["message"]  # the evidence is kept
    assert host(report, "w2022-mode2")["status"] == "waived"
    old = next(r for r in host(report, "s2003-mode2")["results"] if r["rule_id"] == "NATT-001")
    assert old["status"] == "fail"
    assert old["waiver"]["state"] == "expired"
    section = report["waivers"]
    assert [w["label"] for w in section["expiring"]] == ["W-PILOT"]
    assert [w["label"] for w in section["expired"]] == ["W-OLD"]
    assert [w["label"] for w in section["unmatched"]] == ["W-NONE"]
    assert "W-NONE" in proc.stderr
    bad = tmp_path / "bad-waivers.yaml"
    bad.write_text("waivers:\n  - {rules: [NATT-001], hosts: {glob: '*'}, expires: 2030-01-01}\n", encoding="utf-8")
    proc = natt_audit("scan", "-i", str(inventory), "--waivers", str(bad), env=CREDS)
    assert proc.returncode == 2
    assert f"{bad}:2" in proc.stderr and "justification" in proc.stderr


def test_scan_exports_to_a_file_and_spools_for_a_down_siem(
    scanned: tuple[Any, dict[str, Any], Path], tmp_path: Path
) -> None:
    _, report, inventory = scanned
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: the SIEM is down for the whole run
    spool = tmp_path / "spool"
    out = tmp_path / "findings.ocsf.jsonl"
    proc = natt_audit(
        "scan",
        "-i",
        str(inventory),
        "--host-timeout",
        HOST_TIMEOUT,
        "--no-history",
        "-o",
        str(tmp_path / "r.txt"),
        "--export",
        str(out),
        "--export",
        f"syslog+tcp://127.0.0.1:{port}",
        env={**CREDS, "NATT_AUDIT_SPOOL": str(spool)},
    )
    assert proc.returncode == 5, proc.stderr  # undelivered beats incomplete and findings
    events = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    expected = sum(len(h["results"]) for h in report["hosts"])
    assert len(events) == expected
    assert all(e["class_uid"] == 2003 for e in events)
    spooled = [p for p in spool.rglob("*") if p.is_file()]
    assert spooled, "findings must stay spooled when the destination is down"
    assert f"syslog+tcp://127.0.0.1:{port}" in proc.stderr
    proc = natt_audit("scan", "-i", str(inventory), "--no-history", "--export", "hec+https://127.0.0.1:1", env=CREDS)
    assert proc.returncode == 2  # no HEC token: refused before scanning
    assert "token" in proc.stderr.lower()
