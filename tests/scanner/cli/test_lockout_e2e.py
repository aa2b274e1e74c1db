"""Lockout safety end to end: the real CLI against the real lab, logons counted by the lab per host.

docs/authentication.md#lockout-safety: one host in flight until a logon is accepted, then
--concurrency; after 3 rejections with no accepted logon the scan stops (exit 2) and every other
host is auth/not_attempted; a --resume with the same credentials after such a stop is refused.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from scanner.core import ntlmhash
from tests.peers.lab import RunningLab, start_lab
from tests.support.cliproc import LAB_PASSWORD, run_cli

DATA = Path(__file__).parent / "data"
ESTATE = DATA / "estate_lockout.yaml"
DEMO = Path(__file__).resolve().parents[3] / "scanner" / "lab" / "estates" / "demo.yaml"
USER = "LAB\\auditor"
WRONG = "Winter2024!"
STOP = "credentials rejected by 3 hosts; stopped so the account is not locked out"
PLAIN = [f"lk-{n:03d}" for n in range(1, 61)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    with start_lab(ESTATE, tmp_path_factory.mktemp("lab"), stats=True) as running:
        yield running


def inventory(lab: RunningLab, names: list[str], path: Path) -> Path:
    """Write an inventory of these lab hosts, in this order."""
    data = yaml.safe_load(lab.inventory.read_text(encoding="utf-8"))
    hosts = {h["name"]: h for h in data["hosts"]}
    data["hosts"] = [hosts[name] for name in names]
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def scan(
    inv: Path, work: Path, password: str, *extra: str, history: bool = False
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    """Run `natt-audit scan` as a user would; return the process and the JSON report, if written."""
    out = work / "report.json"
    out.unlink(missing_ok=True)
    where = ["--db", str(work / "history.db")] if history else ["--no-history"]
    proc = run_cli(
        "scan",
        "-i",
        str(inv),
        "-f",
        "json",
        "-o",
        str(out),
        "--host-timeout",
        "10",
        *where,
        *extra,
        env={"NATT_AUDIT_USERNAME": USER, "NATT_AUDIT_PASSWORD": password, "XDG_STATE_HOME": str(work)},
    )
    return proc, json.loads(out.read_text(encoding="utf-8")) if out.exists() else None


class Logons:
    """The lab's logon counts per host since construction."""

    def __init__(self, lab: RunningLab) -> None:
        self.lab = lab
        self.before: dict[str, dict[str, int]] = lab.stats()["logons"]["by_host"]

    def delta(self) -> dict[str, tuple[int, int, int]]:
        """Return host -> (attempts, failures, successes) added since construction."""
        out: dict[str, tuple[int, int, int]] = {}
        for name, counts in self.lab.stats()["logons"]["by_host"].items():
            old = self.before.get(name, {})
            a, f, s = (counts[k] - old.get(k, 0) for k in ("attempts", "failures", "successes"))
            if a or f or s:
                out[name] = (a, f, s)
        return out


def reasons(report: dict[str, Any]) -> dict[str, str | None]:
    return {
        h["name"]: None if h["error"] is None else f"{h['error']['stage']}/{h['error']['reason']}"
        for h in report["hosts"]
    }


def test_a_wrong_password_against_60_hosts_reaches_3_and_stops(lab: RunningLab, tmp_path: Path) -> None:
    logons = Logons(lab)
    proc, report = scan(inventory(lab, PLAIN, tmp_path / "inv.yaml"), tmp_path, WRONG, "--concurrency", "32")
    assert proc.returncode == 2, proc.stderr
    assert STOP in proc.stderr and "fix the password of LAB\\auditor" in proc.stderr
    delta = logons.delta()
    assert len(delta) == 3 and all(count == (1, 1, 0) for count in delta.values())  # 3 failed logons in all
    assert report is not None
    by_reason = reasons(report)
    assert sorted(by_reason[name] for name in delta) == ["auth/unauthorized"] * 3
    skipped = [h for h in report["hosts"] if h["name"] not in delta]
    assert len(skipped) == 57
    assert all(h["error"] == {"stage": "auth", "reason": "not_attempted", "message": STOP} for h in skipped)
    assert all(h["requests"] == 0 for h in skipped)
    assert report["summary"]["auth_rejected"] == 3
    assert WRONG not in proc.stderr + proc.stdout


def test_the_demo_estate_with_a_wrong_password_stops_within_3_logons(tmp_path: Path) -> None:
    with start_lab(DEMO, tmp_path / "lab", stats=True) as demo:
        proc, report = scan(demo.inventory, tmp_path, WRONG)
        stats = demo.stats()
    assert proc.returncode == 2, proc.stderr
    assert STOP in proc.stderr
    logons = stats["logons"]
    assert logons["attempts"] == logons["failures"] == 3 and logons["successes"] == 0
    assert report is not None and report["summary"]["hosts_total"] == 200
    reached = [name for name, reason in reasons(report).items() if reason != "auth/not_attempted"]
    assert set(logons["by_host"]) <= set(reached)  # every host that saw the password is reported as such
    assert len(reached) <= 3 + sum(1 for r in reasons(report).values() if r and r.startswith("connect/"))
    assert logons["peak_concurrent"] == 1  # never two logons in progress at once


def test_the_right_password_widens_to_full_concurrency_after_the_first_logon(tmp_path: Path) -> None:
    with start_lab(ESTATE, tmp_path / "lab", stats=True) as fresh:
        proc, report = scan(
            inventory(fresh, PLAIN, tmp_path / "inv.yaml"), tmp_path, LAB_PASSWORD, "--concurrency", "16"
        )
        stats = fresh.stats()
    assert proc.returncode in (0, 1), proc.stderr
    assert report is not None and report["summary"]["coverage"] == 1.0
    assert stats["logons"]["attempts"] == stats["logons"]["successes"] == 60
    assert all(count["attempts"] == 1 for count in stats["logons"]["by_host"].values())
    # Timing-free evidence from the lab: one connection until the first accepted logon, then many.
    assert stats["peak_connections_before_logon"] == 1
    assert stats["peak_connections"] >= 8


def test_rejections_after_an_accepted_logon_do_not_trip_and_are_counted(lab: RunningLab, tmp_path: Path) -> None:
    names = ["ab-reject-1", "lk-001", "ab-reject-2", "ab-reject-3", "ab-reject-4", "lk-002"]
    logons = Logons(lab)
    proc, report = scan(inventory(lab, names, tmp_path / "inv.yaml"), tmp_path, LAB_PASSWORD)
    assert proc.returncode == 3, proc.stderr  # incomplete: 4 hosts unread; not stopped (2)
    assert report is not None and report["summary"]["auth_rejected"] == 4
    assert "not_attempted" not in json.dumps(report)
    assert (
        "4 host(s) rejected the logon of LAB\\auditor although others accepted it: the account lacks "
        "rights there (hosts with error auth/unauthorized)"
    ) in proc.stderr
    assert STOP not in proc.stderr
    delta = logons.delta()
    assert delta == {
        "ab-reject-1": (1, 1, 0),
        "ab-reject-2": (1, 1, 0),
        "ab-reject-3": (1, 1, 0),
        "ab-reject-4": (1, 1, 0),
        "lk-001": (1, 0, 1),
        "lk-002": (1, 0, 1),
    }


def test_hosts_refusing_connections_first_are_no_auth_failures(lab: RunningLab, tmp_path: Path) -> None:
    names = ["aa-refused-1", "aa-refused-2", *PLAIN[10:20]]
    inv = inventory(lab, names, tmp_path / "inv.yaml")
    # Even a breaker of 1 does not trip on hosts that never saw the credentials.
    proc, report = scan(inv, tmp_path, LAB_PASSWORD, "--max-auth-failures", "1")
    assert proc.returncode == 3, proc.stderr
    assert report is not None and report["summary"]["auth_rejected"] == 0
    assert reasons(report)["aa-refused-1"] == reasons(report)["aa-refused-2"] == "connect/refused"
    assert sum(r is None for r in reasons(report).values()) == 10
    # With a wrong password the refused hosts stay refused; the one rejection stops the scan.
    logons = Logons(lab)
    proc, report = scan(inv, tmp_path, WRONG, "--max-auth-failures", "1")
    assert proc.returncode == 2, proc.stderr
    assert "credentials rejected by 1 hosts" in proc.stderr
    assert report is not None
    assert reasons(report)["aa-refused-1"] == "connect/refused"
    assert list(logons.delta().values()) == [(1, 1, 0)]
    assert sum(r == "auth/not_attempted" for r in reasons(report).values()) == 9


def test_resume_after_a_breaker_stop_refuses_the_same_credentials_and_proceeds_with_new_ones(
    lab: RunningLab, tmp_path: Path
) -> None:
    inv = inventory(lab, PLAIN[20:40], tmp_path / "inv.yaml")
    journal = tmp_path / "history.db.journal"
    proc, first = scan(inv, tmp_path, WRONG, history=True)
    assert proc.returncode == 2 and STOP in proc.stderr
    assert first is not None
    head = json.loads(journal.read_text(encoding="utf-8").splitlines()[0].rpartition("\t")[0])  # JSON, tab, HMAC
    assert head["breaker"]["message"] == STOP and head["scan_id"] == first["scan"]["id"]
    assert set(head["credential"]) == {"version", "kind", "salt", "digest"}
    text = journal.read_text(encoding="utf-8")
    nt = ntlmhash.nt_hash(WRONG)
    assert nt is not None
    unsalted = (hashlib.sha256(WRONG.encode()).hexdigest(), hashlib.md5(WRONG.encode()).hexdigest())
    for leak in (WRONG, nt.hex(), *unsalted):
        assert leak not in text  # neither the secret nor an unsalted hash of it

    # The nightly job (scan --resume) the next night, password not fixed: refused, no logon at all.
    logons = Logons(lab)
    proc, report = scan(inv, tmp_path, WRONG, "--resume", history=True)
    assert proc.returncode == 2, proc.stderr
    assert "not resuming" in proc.stderr and "same credentials (LAB\\auditor)" in proc.stderr
    assert "fix the password" in proc.stderr
    assert report is None and logons.delta() == {}
    assert journal.exists()

    # Another password (still wrong): a new scan proceeds, and the breaker guards it the same way.
    proc, report = scan(inv, tmp_path, "Spring2025!", "--resume", history=True)
    assert proc.returncode == 2 and STOP in proc.stderr
    assert "the credentials changed since, so a new scan starts" in proc.stderr
    assert report is not None and report["scan"]["id"] != first["scan"]["id"]
    assert len(logons.delta()) == 3

    # The password fixed: the nightly --resume scans every host and leaves no journal.
    logons = Logons(lab)
    proc, report = scan(inv, tmp_path, LAB_PASSWORD, "--resume", history=True)
    assert proc.returncode in (0, 1), proc.stderr
    assert report is not None and report["summary"]["coverage"] == 1.0
    assert len(logons.delta()) == 20 and not journal.exists()
