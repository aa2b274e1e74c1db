"""One lab estate with every hostile host, scanned once by the real CLI; a plugin of tests/conftest.py.

Slow faults (blackhole, trickle) cost one host deadline each, so they all run in parallel in one scan
(`scanned`), and each test module reads its hosts out of that one report.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.peers.lab import RunningLab, start_lab
from tests.support.cliproc import natt_audit

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "Lab-Passw0rd!"
USERNAME = "LAB\\auditor"
CREDS = {"NATT_AUDIT_USERNAME": USERNAME, "NATT_AUDIT_PASSWORD": PASSWORD}
HOST_TIMEOUT = 2.0
PA = "SYSTEM\\CurrentControlSet\\Services\\PolicyAgent"
IPSEC = "SYSTEM\\CurrentControlSet\\Services\\IPsec"
VALUE = "AssumeUDPEncapsulationContextOnSendRule"

# Host text that tries every trick (docs/reliability.md#host-supplied-text). Raw ESC cannot travel in XML 1.0: the
# lab writes it as &#x1B;, which the client turns back into ESC (scanner/collect/wsman/xmlsafe.py).
HOSTILE = (
    "\x1b[2J\x1b[31mHACKED\x1b[0m \x1b]8;;https://evil.invalid/\x1b\\link\x1b]8;;\x1b\\ "
    "\x1b]0;pwned title\x07 \x9b31m C1-CSI \x85 NEL \u202eRIGHT-TO-LEFT\u202c \u2066iso\u2069 "
    "[bold red]PASS[/] [link=https://evil.invalid]click[/link] line1\nline2\r| a=b \\ back"
)
MARKUP = "[bold red]PASS[/] [link=https://evil.invalid]click[/link] [/]\nPASS fake-row"
FORMULAS = ('=HYPERLINK("http://evil.invalid")', "+1+1", "-2+3", "@SUM(A1)")
# Characters from the host that must never reach a terminal: ESC, BEL, C1 controls, bidi controls.
FORBIDDEN_ON_TERMINAL = ["\x07", "\x9b", "\x85", "\u202e", "\u202c", "\u2066", "\u2069"]
# Host text for the SIEM exports: ESC, BEL, NUL (the lab sends it as &#x0;), an 8-bit CSI (U+009B)
# and a right-to-left override. None of SIEM_RAW may reach CSV, CEF, syslog or JSONL text raw.
SIEM_TEXT = "siem \x1b[31mESC\x1b[0m \x07BEL \x00NUL \x9b2J C1 \u202eRTL\u202c end"
SIEM_RAW = ("\x1b", "\x07", "\x00", "\x9b", "\u202e")


def _value(vtype: str, data: Any) -> dict[str, Any]:
    return {VALUE: {"type": vtype, "data": data}}


def _os(caption: str) -> dict[str, Any]:
    return {"version": "10.0.19045", "build": 19045, "caption": caption}


# name -> host fields (name added later). Faults: docs/reliability.md (network, HTTP, broken replies, XML).
FAULT_HOSTS: dict[str, dict[str, Any]] = {
    "f-refuse": {"fault": "refuse"},
    "f-blackhole": {"fault": "blackhole"},
    "f-trickle": {"fault": "trickle"},
    "f-reset": {"fault": "reset"},
    "f-auth-reject": {"fault": "auth-reject"},
    "f-http-502": {"fault": "http-502-html"},
    "f-quota-op": {"fault": "quota"},
    "f-quota-shell": {"fault": "soap-fault:2150859173"},
    "f-access-denied": {"fault": "wmi-access-denied"},
    "f-unknown-class": {"fault": "soap-fault:2150858752"},
    "f-bad-namespace": {"fault": "soap-fault:2150858778"},
    "f-op-timeout": {"fault": "soap-fault:2150858793"},
    "f-malformed": {"fault": "malformed-xml"},
    "f-xml-bomb": {"fault": "xml-bomb"},
    "f-oversize": {"fault": "oversize"},
    "f-relatesto": {"fault": "wrong-relatesto"},
    "f-denied-key": {"denied_keys": [PA]},
    "f-slow-ok": {"fault": "slow:300"},
    "f-https": {"scheme": "https"},  # scanned without the lab CA: must be a tls error, never a fallback
}

# Hostile text (docs/reliability.md#host-supplied-text): failing hosts, so the console shows their caption and value.
TEXT_HOSTS: dict[str, dict[str, Any]] = {
    "t-caption": {"os": _os(HOSTILE), "registry": {PA: _value("REG_DWORD", 2)}},
    "t-sz": {"registry": {PA: _value("REG_SZ", HOSTILE)}},
    "t-multi": {"registry": {PA: _value("REG_MULTI_SZ", [HOSTILE, *FORMULAS])}},
    "t-formula": {"os": _os(FORMULAS[0]), "registry": {PA: _value("REG_SZ", FORMULAS[1])}},
    "t-markup": {"os": _os(MARKUP), "registry": {PA: _value("REG_SZ", MARKUP)}},
    "t-siem": {"os": _os(SIEM_TEXT), "registry": {PA: _value("REG_SZ", SIEM_TEXT)}},
}

# Registry data (docs/reliability.md#registry-data): name -> (fields, expected setting subset), as
# docs/domain.md#effective-mode says.
REGISTRY_HOSTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "r-sz-2": (
        {"registry": {PA: _value("REG_SZ", "2")}},
        {"effective_mode": 0, "integrity": "invalid_type", "raw_type": "REG_SZ", "raw_value": "2"},
    ),
    "r-sz-02": (
        {"registry": {PA: _value("REG_SZ", "02")}},
        {"effective_mode": 0, "integrity": "invalid_type", "raw_type": "REG_SZ", "raw_value": "02"},
    ),
    "r-sz-spaced": (
        {"registry": {PA: _value("REG_SZ", " 2 ")}},
        {"effective_mode": 0, "integrity": "invalid_type", "raw_type": "REG_SZ", "raw_value": " 2 "},
    ),
    "r-sz-empty": (
        {"registry": {PA: _value("REG_SZ", "")}},
        {"effective_mode": 0, "integrity": "invalid_type", "raw_type": "REG_SZ", "raw_value": ""},
    ),
    "r-dword-max": (
        {"registry": {PA: _value("REG_DWORD", 4294967295)}},
        {"effective_mode": "unknown", "integrity": "invalid_value", "raw_type": "REG_DWORD", "raw_value": 4294967295},
    ),
    "r-dword-3": (
        {"registry": {PA: _value("REG_DWORD", 3)}},
        {"effective_mode": "unknown", "integrity": "invalid_value", "raw_value": 3},
    ),
    "r-qword": (
        {"registry": {PA: _value("REG_QWORD", 2)}},
        {"effective_mode": 0, "integrity": "invalid_type", "raw_type": "REG_QWORD", "raw_value": 2},
    ),
    "r-qword-big": (
        {"registry": {PA: _value("REG_QWORD", 18446744073709551615)}},
        {"effective_mode": 0, "integrity": "invalid_type", "raw_type": "REG_QWORD", "raw_value": 18446744073709551615},
    ),
    "r-binary": (
        {"registry": {PA: _value("REG_BINARY", "02000000")}},
        {"effective_mode": 0, "integrity": "invalid_type", "raw_type": "REG_BINARY", "raw_value": "02000000"},
    ),
    "r-multi": (
        {"registry": {PA: _value("REG_MULTI_SZ", ["2"])}},
        {"effective_mode": 0, "integrity": "invalid_type", "raw_type": "REG_MULTI_SZ", "raw_value": ["2"]},
    ),
    "r-both-keys": (
        {"registry": {PA: _value("REG_DWORD", 1), IPSEC: _value("REG_DWORD", 2)}},
        {"effective_mode": 1, "integrity": "ok", "raw_type": "REG_DWORD", "raw_value": 1},
    ),
    "r-both-keys-2003": (
        {"os": "2003-sp2", "registry": {PA: _value("REG_DWORD", 2), IPSEC: _value("REG_DWORD", 0)}},
        {"effective_mode": 0, "integrity": "ok", "raw_type": "REG_DWORD", "raw_value": 0},
    ),
    "r-dword-2": (
        {"registry": {PA: _value("REG_DWORD", 2)}},
        {"effective_mode": 2, "integrity": "ok", "raw_type": "REG_DWORD", "raw_value": 2},
    ),
}


def estate_text() -> str:
    """Return the shared estate as YAML (JSON-quoted values are YAML, escapes included)."""
    hosts: list[dict[str, Any]] = []
    for name, fields in FAULT_HOSTS.items():
        hosts.append({"name": name, **fields})
    for name, fields in TEXT_HOSTS.items():
        hosts.append({"name": name, **fields})
    for name, (fields, _) in REGISTRY_HOSTS.items():
        hosts.append({"name": name, **fields})
    lines = [
        "accounts:",
        f"  - {{username: {json.dumps(USERNAME)}, password: {json.dumps(PASSWORD)}}}",
        "defaults: {os: win10, latency_ms: 0, wmi_ms: 0}",
        "hosts:",
    ]
    lines += [f"  - {json.dumps(h)}" for h in hosts]
    return "\n".join(lines) + "\n"


def write_inventory(path: Path, lab: RunningLab, names: list[str]) -> Path:
    """Write a YAML inventory holding only `names` from the running lab."""
    lines = ["hosts:"]
    for name in names:
        address, port, scheme = lab.hosts[name]
        lines.append(f"  - {{name: {json.dumps(name)}, address: {address}, port: {port}, scheme: {scheme}}}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def hosts_by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Index a JSON report's hosts by name, asserting each appears once."""
    names = [h["name"] for h in report["hosts"]]
    assert len(names) == len(set(names)), "a host appears more than once"
    return {h["name"]: h for h in report["hosts"]}


@dataclass
class Scanned:
    """The shared lab and the one scan of every host in it."""

    lab: RunningLab
    work: Path
    proc: subprocess.CompletedProcess[bytes]
    report: dict[str, Any]
    report_bytes: bytes
    elapsed: float

    @property
    def hosts(self) -> dict[str, dict[str, Any]]:
        """Return the report's hosts by name."""
        return hosts_by_name(self.report)


@pytest.fixture(scope="session")
def shared_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningLab, Path]]:
    """Serve the shared estate for the whole session."""
    work = tmp_path_factory.mktemp("reliability-lab")
    estate = work / "estate.yaml"
    estate.write_text(estate_text(), encoding="utf-8")
    with start_lab(estate, work / "lab") as lab:
        yield lab, work


@pytest.fixture(scope="session")
def scanned(shared_lab: tuple[RunningLab, Path]) -> Scanned:
    """Scan every host of the shared estate once with the real CLI (verbose logs on)."""
    lab, work = shared_lab
    out = work / "report.json"
    started = time.monotonic()
    proc = natt_audit(
        "-v",
        "scan",
        "-i",
        str(lab.inventory),
        "-f",
        "json",
        "-o",
        str(out),
        "--host-timeout",
        str(HOST_TIMEOUT),
        "--connect-timeout",
        "1",
        "--concurrency",
        "64",
        env=CREDS,
    )
    elapsed = time.monotonic() - started
    assert out.exists(), proc.stderr.decode(errors="replace")
    data = out.read_bytes()
    return Scanned(lab, work, proc, json.loads(data), data, elapsed)
