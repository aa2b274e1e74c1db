"""`natt-audit scan` and the history commands through main(argv), in this process, against the lab."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from spnego._ntlm_raw.md4 import md4

from scanner.cli.main import main
from scanner.core.exitcodes import ExitCode
from scanner.history.journal import Journal, JournalHeader, journal_path_for, targets_digest
from scanner.history.lock import ScanLock
from scanner.inputs.inventory import load_inventory
from tests.scanner.conftest import ScanLab
from tests.support.cliproc import LAB_PASSWORD
from tests.support.nightly_helpers import read

FAST = ["--host-timeout", "5", "--connect-timeout", "2"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err.splitlines()


def nt_hash(password: str) -> str:
    """Return the NT hash (MD4 of UTF-16LE) the NTLM exchange derives from the password."""
    return bytes(md4(password.encode("utf-16-le"))).hex()  # pyspnego's MD4: OpenSSL 3 may lack it


def test_a_clean_scan_writes_the_report_and_one_summary_line(
    scan_lab: ScanLab, lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = scan_lab.inventory("e-pass")
    db, out = lab_env / "h.db", lab_env / "r.json"
    code, stdout, err = run(
        ["scan", "-i", str(inventory), "-f", "json", "-o", str(out), "--db", str(db), *FAST], capsys
    )
    assert code == ExitCode.OK and stdout == ""
    assert err == [
        "natt-audit: scanned 1 hosts: 1 pass, 0 fail, 0 waived, 0 error, 0 not_applicable; coverage 100.0%; exit 0 (ok)"
    ]
    report = json.loads(out.read_text(encoding="utf-8"))
    assert [h["name"] for h in report["hosts"]] == ["e-pass"] and report["hosts"][0]["status"] == "pass"
    # The history commands read what the scan recorded.
    code, stdout, err = run(["history", "--db", str(db), "-f", "json"], capsys)
    assert code == 0 and err == []
    assert [r["id"] for r in json.loads(stdout)] == [report["scan"]["id"]]


def test_console_report_on_stdout_then_drift_history_diff_trend(
    scan_lab: ScanLab, lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = scan_lab.inventory("e-pass", "e-fail", "e-refused")
    db = lab_env / "h.db"
    argv = ["scan", "-i", str(inventory), "--db", str(db), "--color", "never", *FAST]
    code, stdout, err = run(argv, capsys)
    assert code == ExitCode.INCOMPLETE
    assert "e-fail" in stdout and "NATT-001" in stdout
    assert err[-1].endswith("coverage 66.7%; exit 3 (incomplete)")
    code, _, err = run(argv, capsys)
    assert err[-1].startswith("natt-audit: since scan ") and "0 new failures, 0 resolved" in err[-1]
    html = lab_env / "history.html"
    code, stdout, err = run(["history", "--db", str(db), "--html", str(html)], capsys)
    assert code == 0 and stdout.count("complete") == 2
    assert err == [f"natt-audit: HTML history report written to {html}"]
    assert html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    code, stdout, _ = run(["diff", "--db", str(db)], capsys)
    assert code == 0 and stdout.startswith("Drift ")
    code, stdout, _ = run(["diff", "--db", str(db), "-f", "json"], capsys)
    assert code == 0 and json.loads(stdout)["events"] == []
    code, stdout, _ = run(["trend", "--db", str(db)], capsys)
    assert code == 0 and "Compliance and coverage over time" in stdout


def test_history_commands_without_a_database_exit_2(lab_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("history", "diff", "trend"):
        code, stdout, err = run([command, "--db", str(lab_env / "none.db")], capsys)
        assert code == ExitCode.USAGE and stdout == ""
        missing = lab_env / "none.db"
        assert err == [
            f"natt-audit: error: no history database at {missing}; run `natt-audit scan` first (or give --db)"
        ]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ([], "no inventory: give -i/--inventory"),
        (["-i", "/nonexistent/hosts.yaml"], "/nonexistent/hosts.yaml: cannot read the inventory"),
        (["-i", "BAD"], ":1:"),
        (["-i", "GOOD", "-p", "no-such-policy"], "no-such-policy"),
        (["-i", "GOOD", "-p", "BADPOLICY"], "BADPOLICY"),
    ],
)
def test_bad_inputs_exit_2_with_one_error_line_before_any_packet(
    argv: list[str], words: str, lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad, good, policy = lab_env / "bad.txt", lab_env / "good.txt", lab_env / "policy.yaml"
    bad.write_text("not a host at all!\n", encoding="utf-8")
    good.write_text("127.0.0.1:9\n", encoding="utf-8")
    policy.write_text("name: p\nrules: {}\n", encoding="utf-8")
    paths = {"BAD": str(bad), "GOOD": str(good), "BADPOLICY": str(policy)}
    argv = [paths.get(a, a) for a in argv]
    words = paths.get(words, words)
    code, stdout, err = run(["scan", *argv, "--db", str(lab_env / "h.db")], capsys)
    assert code == ExitCode.USAGE and stdout == ""
    assert len(err) == 1 and err[0].startswith("natt-audit: error: ") and words in err[0], err
    assert not (lab_env / "h.db").exists() and not (lab_env / "h.db.lock").exists()  # nothing touched


def test_a_held_lock_exits_4_without_scanning(
    scan_lab: ScanLab, lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, out = lab_env / "h.db", lab_env / "r.json"
    with ScanLock(db):
        code, stdout, err = run(
            ["scan", "-i", str(scan_lab.inventory("e-pass")), "-o", str(out), "--db", str(db)], capsys
        )
    assert code == ExitCode.LOCKED and stdout == ""
    assert len(err) == 1
    assert err[0].startswith("natt-audit: error: another natt-audit scan is using this history database (pid ")
    assert not out.exists()


def test_an_unwritable_history_still_writes_the_report_and_exits_2(
    scan_lab: ScanLab, lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, out = lab_env / "h.db", lab_env / "r.json"
    db.mkdir()  # a folder where the database file should be
    code, _, err = run(
        ["scan", "-i", str(scan_lab.inventory("e-pass")), "-o", str(out), "-f", "json", "--db", str(db)], capsys
    )
    assert code == ExitCode.USAGE
    assert err[0].startswith(f"natt-audit: error: cannot open the history database {db}")
    assert err[-1].endswith("exit 2 (usage)")
    assert json.loads(out.read_text(encoding="utf-8"))["summary"]["hosts_by_status"]["pass"] == 1


def test_resume_continues_the_journalled_scan(
    scan_lab: ScanLab, lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = scan_lab.inventory("e-pass", "e-fail")
    db, out = lab_env / "h.db", lab_env / "r.json"
    targets = load_inventory(inventory).targets
    header = JournalHeader(
        "interrupted-scan",
        "2026-11-27T01:00:00Z",
        "path:" + str(inventory.resolve()),
        targets_digest(targets),
        ("baseline",),
    )
    db.parent.mkdir(parents=True, exist_ok=True)
    journal = Journal(journal_path_for(db), header, fresh=True)
    journal.append(read("e-pass", 1).model_copy(update={"target": targets[0], "requests": 999}))
    journal.close()
    argv = ["scan", "-i", str(inventory), "-f", "json", "-o", str(out), "--db", str(db), *FAST]
    code, _, err = run([*argv, "-p", "strict", "--resume"], capsys)
    assert code == ExitCode.USAGE and len(err) == 1
    assert "it ran with policies ['baseline'], not ['strict']; run without --resume" in err[0]
    code, _, err = run([*argv, "--resume"], capsys)
    assert code == ExitCode.FINDINGS
    assert (
        err[0] == "natt-audit: resuming scan interrupted-scan (started 2026-11-27T01:00:00Z): 1 of 2 hosts already done"
    )
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["scan"]["id"] == "interrupted-scan"
    # NT 6+: the OS comes from the NTLM CHALLENGE (docs/wire.md), so a read costs 4 requests.
    assert {h["name"]: h["requests"] for h in report["hosts"]} == {"e-pass": 999, "e-fail": 4}
    assert not journal_path_for(db).exists()
    code, _, err = run([*argv, "--resume"], capsys)
    assert err[0] == "natt-audit: nothing to resume in this database; starting a new scan"


def test_json_logs_make_every_stderr_line_a_record(
    scan_lab: ScanLab, lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = scan_lab.inventory("e-pass", "e-refused")
    code, _, err = run(
        ["scan", "-i", str(inventory), "-o", str(lab_env / "r.json"), "--no-history", "--log-format", "json", *FAST],
        capsys,
    )
    assert code == ExitCode.INCOMPLETE
    records = [json.loads(line) for line in err]
    assert [r["level"] for r in records] == ["info"]
    assert records[0]["msg"].startswith("scanned 2 hosts")
    assert records[0]["fields"]["exit_code"] == 3 and records[0]["fields"]["by_status"]["error"] == 1


def test_the_config_file_can_choose_json_logs(
    scan_lab: ScanLab, lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = lab_env / "natt-audit.toml"
    config.write_text(
        f'inventory = "{scan_lab.inventory("e-pass")}"\nlog_format = "json"\nhistory = false\n'
        f'output = "{lab_env / "r.json"}"\n',
        encoding="utf-8",
    )
    code, _, err = run(["scan", "--config", str(config)], capsys)
    assert code == ExitCode.OK and len(err) == 1 and json.loads(err[0])["fields"]["exit_code"] == 0


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_logs_connection_auth_requests_failures_and_stages_without_secrets(
    where: str, scan_lab: ScanLab, lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = scan_lab.inventory("e-pass", "e-refused")
    address, port, _ = scan_lab.lab.hosts["e-pass"]
    _, refused_port, _ = scan_lab.lab.hosts["e-refused"]
    argv = [
        "scan",
        "-i",
        str(inventory),
        "-f",
        "json",
        "-o",
        str(lab_env / "r.json"),
        "--db",
        str(lab_env / "h.db"),
        *FAST,
    ]
    argv = ["-v", *argv] if where == "before" else [*argv, "-v"]
    code, _, err = run(argv, capsys)
    assert code == ExitCode.INCOMPLETE
    text = "\n".join(err)
    debug = [line for line in err if line.startswith("natt-audit: debug: ")]
    expected = [
        f"e-pass: connecting to {address}:{port} over http, auth ntlm",
        f"e-pass: connected to http://{address}:{port} (connection 1) in ",
        "e-pass: request 1 (Negotiate auth leg 1, 0 bytes) -> HTTP 401",
        "e-pass: request 2 (Negotiate auth leg 2, 0 bytes) -> HTTP 200",
        "e-pass: authenticated as LAB\\auditor with Negotiate (ntlm) in 2 legs, messages encrypted",
        "e-pass: request 3 (encrypted message, ",
        "e-pass: request 4 (encrypted message, ",
        "e-pass: read in ",
        f"e-refused: connecting to {address}:{refused_port} over http",
        "e-refused: failed after ",
        "0 requests: connect/refused: connection refused",
        "inputs: 2 hosts from ",
        "stage inputs: ",
        "stage history-open: ",
        "collection: 2 hosts (0 from the journal) in ",
        "stage collect-and-evaluate: ",
        "stage history-record: ",
        "stage report: ",
    ]
    for words in expected:
        assert any(words in line for line in debug), words
    assert err[-1].startswith("natt-audit: scanned 2 hosts")
    # No secret in any form the exchange uses: the password, its UTF-16, its NT hash, its digest.
    for secret in (
        LAB_PASSWORD,
        LAB_PASSWORD.encode("utf-16-le").hex(),
        nt_hash(LAB_PASSWORD),
        hashlib.sha256(LAB_PASSWORD.encode()).hexdigest(),
    ):
        assert secret.lower() not in text.lower()
    assert "Authorization" not in text and "Negotiate TlRMTVNT" not in text


def test_without_verbose_there_is_no_debug_line(
    scan_lab: ScanLab, lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        ["scan", "-i", str(scan_lab.inventory("e-pass")), "-o", str(lab_env / "r.json"), "--no-history"], capsys
    )
    assert code == ExitCode.OK and len(err) == 1 and "debug" not in err[0]
