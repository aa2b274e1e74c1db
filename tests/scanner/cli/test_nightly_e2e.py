"""Nightly operation end to end: the real CLI as a subprocess against the lab, real SQLite, real signals.

- SIGTERM a real scan, check the partial report and exit 130, a second scan on the same database
  exits 4 at once, `--resume` finishes it without rescanning finished hosts, and the final report
  equals an uninterrupted run's (ids and timestamps aside);
- `--deadline`: unreached hosts are error timeout/deadline and the report is still written;
- two nights of a changing estate: drift in the JSON and console reports, `diff`, `history`,
  `trend`, `config show`, `--log-format json` with hostile host text, and the HTML report drawn
  by headless Chromium.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from scanner.history.journal import line_mac
from scanner.history.store import SqliteStore
from tests.peers.lab import RunningLab, start_lab
from tests.support.cliproc import CLI, cli_env, run_cli

HERE = Path(__file__).parent / "data"
PASSWORD = "Lab-Passw0rd!"
CREDS = {"NATT_AUDIT_USERNAME": "LAB\\auditor", "NATT_AUDIT_PASSWORD": PASSWORD}


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return cli_env({**CREDS, **(extra or {})})


def natt_audit(
    *args: str, timeout: float = 120, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env={**CREDS, **(extra or {})}, timeout=timeout)


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def normalised(report: dict[str, Any]) -> dict[str, Any]:
    """Drop what legitimately differs between two runs of the same scan: ids and timestamps."""
    copy = json.loads(json.dumps(report))
    for key in ("id", "started_at", "finished_at"):
        copy["scan"].pop(key)
    copy.pop("drift")
    return copy


@pytest.fixture(scope="module")
def slow_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    with start_lab(HERE / "estate_slow.yaml", tmp_path_factory.mktemp("slow-lab")) as lab:
        yield lab


SCAN = ["-f", "json", "--concurrency", "2", "--host-timeout", "10", "--connect-timeout", "2"]


def journal_hosts(path: Path) -> int:
    try:
        return max(0, path.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def test_sigterm_lock_and_resume_equal_a_full_run(slow_lab: RunningLab, tmp_path: Path) -> None:
    inv = str(slow_lab.inventory)
    full_out = tmp_path / "full.json"
    full = natt_audit("scan", "-i", inv, *SCAN, "-o", str(full_out), "--db", str(tmp_path / "full.db"))
    assert full.returncode == 3, full.stderr  # slow-refused: coverage below 1.0
    full_report = load(full_out)

    db = tmp_path / "nightly.db"
    journal = Path(f"{db}.journal")
    part_out = tmp_path / "part.json"
    proc = subprocess.Popen(
        [*CLI, "scan", "-i", inv, *SCAN, "-o", str(part_out), "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        deadline = time.monotonic() + 30
        while journal_hosts(journal) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert journal_hosts(journal) >= 3, "the scan never checkpointed 3 hosts"
        # A second scan on the same database refuses at once, with its own exit code.
        started = time.monotonic()
        second = natt_audit("scan", "-i", inv, *SCAN, "--db", str(db), "-o", str(tmp_path / "x.json"))
        assert second.returncode == 4, second.stderr
        assert time.monotonic() - started < 10
        assert "another natt-audit scan is using this history database" in second.stderr
        assert not (tmp_path / "x.json").exists()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "(interrupted)" in stderr and "exit 130" in stderr
    partial = load(part_out)
    assert partial["scan"]["interrupted"] is True
    unreached = [h for h in partial["hosts"] if h["error"] and h["error"]["reason"] == "interrupted"]
    assert unreached, "SIGTERM came after the last host: nothing left to resume"
    assert all(h["status"] == "error" and h["error"]["stage"] == "timeout" for h in unreached)
    assert journal.exists()
    listed = json.loads(natt_audit("history", "--db", str(db), "-f", "json").stdout)
    assert [(r["id"], r["interrupted"]) for r in listed] == [(partial["scan"]["id"], True)]

    # Mark one journalled host: if resume rescanned it, the marker would vanish. The line is
    # signed again with the database's journal key, as only natt-audit (or its owner) can.
    lines = journal.read_bytes().splitlines()
    text, _, _ = lines[1].rpartition(b"\t")
    record = json.loads(text)
    marked = record["observation"]["target"]["name"]
    real_requests = record["observation"]["requests"]
    record["observation"]["requests"] = 999
    with SqliteStore(db) as store:
        key = store.journal_key()
    text = json.dumps(record).encode()
    lines[1] = text + b"\t" + line_mac(key, partial["scan"]["id"], text).encode()
    journal.write_bytes(b"\n".join(lines) + b"\n")

    resumed_out = tmp_path / "resumed.json"
    resumed = natt_audit("scan", "-i", inv, *SCAN, "-o", str(resumed_out), "--db", str(db), "--resume")
    assert resumed.returncode == full.returncode, resumed.stderr
    assert f"resuming scan {partial['scan']['id']}" in resumed.stderr
    final = load(resumed_out)
    assert final["scan"]["id"] == partial["scan"]["id"]
    assert final["scan"]["started_at"] == partial["scan"]["started_at"]
    assert final["scan"]["interrupted"] is False
    host = next(h for h in final["hosts"] if h["name"] == marked)
    assert host["requests"] == 999  # taken from the journal, not scanned again
    host["requests"] = real_requests
    final["summary"]["requests_total"] -= 999 - real_requests
    assert normalised(final) == normalised(full_report)
    assert not journal.exists()
    listed = json.loads(natt_audit("history", "--db", str(db), "-f", "json").stdout)
    assert [(r["id"], r["interrupted"]) for r in listed] == [(partial["scan"]["id"], False)]


def test_deadline_reports_unreached_hosts_and_still_writes(slow_lab: RunningLab, tmp_path: Path) -> None:
    out = tmp_path / "deadline.json"
    started = time.monotonic()
    proc = natt_audit(
        "scan", "-i", str(slow_lab.inventory), *SCAN, "-o", str(out), "--db", str(tmp_path / "d.db"),
        "--concurrency", "1", "--deadline", "2s", "--grace", "5",
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert proc.returncode == 3, proc.stderr
    assert elapsed < 15
    report = load(out)
    assert report["scan"]["interrupted"] is False
    cut = [h for h in report["hosts"] if h["error"] and h["error"]["reason"] == "deadline"]
    read = [h for h in report["hosts"] if h["error"] is None]
    assert cut and read
    assert all(h["error"]["stage"] == "timeout" and h["status"] == "error" for h in cut)
    assert "deadline (2s) passed" in proc.stderr
    assert not Path(f"{tmp_path / 'd.db'}.journal").exists()


def chromium_dom(html_file: Path, workdir: Path) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is required (apt-get install -y chromium)"
    profile = workdir / "chromium-profile"
    proc = subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
            html_file.resolve().as_uri(),
        ],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_two_nights_drift_history_and_html(tmp_path: Path) -> None:
    db = tmp_path / "state" / "history.db"
    config = tmp_path / "natt-audit.toml"
    config.write_text(
        f'inventory_id = "corp-estate"\ndatabase = "{db}"\nformat = "json"\nconcurrency = 8\n'
        "[timeouts]\nhost = 5\nconnect = 2\n",
        encoding="utf-8",
    )
    with start_lab(HERE / "estate_night1.yaml", tmp_path / "lab1") as lab:
        night1 = natt_audit("scan", "--config", str(config), "-i", str(lab.inventory), "-o", str(tmp_path / "n1.json"))
    assert night1.returncode == 1, night1.stderr
    assert load(tmp_path / "n1.json")["drift"] is None  # first scan: nothing to compare with
    with start_lab(HERE / "estate_night2.yaml", tmp_path / "lab2") as lab:
        night2 = natt_audit(
            "scan", "-i", str(lab.inventory), "-o", str(tmp_path / "n2.json"), "--log-format", "json",
            extra={"NATT_AUDIT_CONFIG": str(config)},
        )  # fmt: skip
        console = natt_audit(
            "scan", "--config", str(config), "-i", str(lab.inventory), "-f", "console", "--color", "never",
            "--db", str(tmp_path / "other.db"),
        )  # fmt: skip
    assert night2.returncode == 3, night2.stderr  # n-goes-dark is refused now
    # Every stderr line is one JSON object; the hostile caption forged nothing.
    records = [json.loads(line) for line in night2.stderr.splitlines()]
    assert records and all(set(r) == {"ts", "level", "msg", "fields"} for r in records)
    assert not any(r["msg"] == "forged" for r in records)
    summary = next(r for r in records if r["msg"].startswith("scanned "))
    assert summary["fields"]["exit_code"] == 3

    report = load(tmp_path / "n2.json")
    schema = json.loads(natt_audit("schema", "report").stdout)
    jsonschema.validate(report, schema)
    jsonschema.validate(load(tmp_path / "n1.json"), schema)
    drift = report["drift"]
    assert [(f["host"], f["rule_id"], f["before"], f["after"]) for f in drift["new_failures"]] == [
        ("n-joins", "NATT-001", None, "fail"),
        ("n-turns-bad", "NATT-001", "pass", "fail"),
    ]
    assert [(f["host"], f["rule_id"], f["after"]) for f in drift["resolved_failures"]] == [
        ("n-fixed", "NATT-001", "pass"),
    ]  # n-leaves failed but left the inventory: in `left`, not "resolved"
    modes = drift["changed_settings"]
    assert {(c["host"], c["before"], c["after"]) for c in modes if c["field"] == "effective_mode"} == {
        ("n-turns-bad", "1", "2"),
        ("n-fixed", "2", "0"),
    }
    assert [(h["host"], h["reason"]) for h in drift["newly_unreachable"]] == [("n-goes-dark", "connect/refused")]
    assert drift["joined"] == ["n-joins"] and drift["left"] == ["n-leaves"]
    assert "2 new failures, 1 resolved" in summary["msg"] or any(
        "2 new failures, 1 resolved" in r["msg"] for r in records
    )
    # Another database has no history: the console report of that scan has no drift row...
    assert "since scan" not in console.stdout

    # diff (default: the last two scans), with the OCSF lifecycle events.
    diff = natt_audit("diff", "--db", str(db), "-f", "json")
    assert diff.returncode == 0, diff.stderr
    events = {(e["host"], e["rule_id"]): e for e in json.loads(diff.stdout)["events"]}
    assert events[("n-turns-bad", "NATT-001")]["activity_id"] == 1
    assert events[("n-fixed", "NATT-001")]["activity_id"] == 3
    closing = events[("n-fixed", "NATT-001")]
    assert closing["finding_uid"] == next(
        r["finding_id"] for h in load(tmp_path / "n1.json")["hosts"] if h["name"] == "n-fixed" for r in h["results"]
        if r["rule_id"] == "NATT-001"
    )  # fmt: skip
    text = natt_audit("diff", "--db", str(db)).stdout
    assert "New failures" in text and "n-turns-bad" in text and "Newly unreachable" in text

    history = natt_audit("history", "--db", str(db))
    assert history.returncode == 0 and len(re.findall(r"complete", history.stdout)) == 2
    trend = natt_audit("trend", "--db", str(db))
    assert trend.returncode == 0 and "█" in trend.stdout and "Compliance and coverage" in trend.stdout

    shown = natt_audit("config", "show", "--config", str(config))
    assert shown.returncode == 0
    assert 'inventory_id = "corp-estate"' in shown.stdout and PASSWORD not in shown.stdout

    html_file = tmp_path / "history.html"
    made = natt_audit("history", "--db", str(db), "--html", str(html_file))
    assert made.returncode == 0, made.stderr
    page = html_file.read_text(encoding="utf-8")
    assert "<script>alert" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    dom = chromium_dom(html_file, tmp_path)
    assert 'data-charts="drawn"' in dom  # our script ran under the page's CSP
    assert len(re.findall(r'<polyline[^>]*class="series (?:compliance|coverage)"', dom)) == 2
    assert len(re.findall(r'<circle[^>]*class="point', dom)) == 4  # 2 scans x 2 series
    assert len(re.findall(r'class="seg"', dom)) >= 5  # modes by tag: several tag rows
    sites = re.findall(r'<rect[^>]*class="bar"', dom)
    assert len(sites) == 3  # paris, tokyo, oslo
    assert "<script>alert(1)</script>" not in dom
