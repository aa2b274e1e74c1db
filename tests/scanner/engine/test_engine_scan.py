"""scanner/engine/scan.py in this process: inputs, lock, history, resume, record, drift, report, export."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.core.errors import NattError, OutputError
from scanner.core.exitcodes import ExitCode
from scanner.core.logsetup import setup_logging
from scanner.engine.inputs import load_inputs
from scanner.engine.run import stage
from scanner.engine.scan import ScanResult, execute_scan, inventory_id_of
from scanner.history.journal import Journal, JournalHeader, journal_path_for, targets_digest
from scanner.history.lock import LockedError, ScanLock
from scanner.history.store import SqliteStore, StoreError
from scanner.inputs.config import Config, CredentialSettings, load_config
from scanner.inputs.inventory import InventoryError
from tests.scanner.conftest import ScanLab
from tests.support.nightly_helpers import read


@pytest.fixture(autouse=True)
def _logging() -> Iterator[None]:
    """Log as the CLI does (plain, INFO) so the tests read stderr as a user would."""
    setup_logging()
    yield
    setup_logging()


def config(inventory: Path, tmp: Path, **keys: object) -> Config:
    """Return the effective configuration for a scan of `inventory` with these flags."""
    flags: dict[str, object] = {
        "inventory": str(inventory),
        "database": str(tmp / "history.db"),
        "format": "json",
        "output": str(tmp / "report.json"),
        "timeouts.host": 5.0,
        "timeouts.connect": 2.0,
    }
    flags.update(keys)
    return load_config(path=None, environ={}, flags=flags).config


def scan(cfg: Config, *, resume: bool = False) -> ScanResult:
    return execute_scan(cfg, load_inputs(cfg, os.environ, stdin_isatty=False), resume=resume, environ=os.environ)


def err_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_a_clean_scan_is_recorded_and_the_next_one_has_drift(
    scan_lab: ScanLab, lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(scan_lab.inventory("e-pass"), lab_env)
    first = scan(cfg)
    assert first.code is ExitCode.OK and first.recorded and first.drift is None
    assert first.summary.hosts_total == 1 and first.summary.coverage == 1.0
    assert err_lines(capsys) == [
        "natt-audit: scanned 1 host: 1 pass, 0 fail, 0 waived, 0 error, 0 not_applicable; coverage 100.0%; exit 0 (ok)"
    ]
    report = json.loads((lab_env / "report.json").read_text(encoding="utf-8"))
    assert report["scan"]["id"] == first.scan.id and report["drift"] is None
    second = scan(cfg)
    assert second.drift is not None and second.drift.previous_scan_id == first.scan.id
    lines = err_lines(capsys)
    assert lines[-1].startswith(f"natt-audit: since scan {first.scan.id[:8]} (")
    assert "0 new failures" in lines[-1]
    with SqliteStore(lab_env / "history.db") as store:
        assert {row.id for row in store.scans()} == {second.scan.id, first.scan.id}
    assert not journal_path_for(lab_env / "history.db").exists()  # recorded: nothing left to resume


def test_without_history_nothing_is_locked_or_recorded(scan_lab: ScanLab, lab_env: Path) -> None:
    cfg = config(scan_lab.inventory("e-pass", "e-fail", "e-refused"), lab_env, history=False)
    result = scan(cfg)
    assert result.code is ExitCode.INCOMPLETE  # e-refused cannot be read: coverage 2/3 beats the finding
    assert not result.recorded and {k: v for k, v in result.summary.hosts_by_status.items() if v} == {
        "pass": 1,
        "fail": 1,
        "error": 1,
    }
    assert not (lab_env / "history.db").exists() and not (lab_env / "history.db.lock").exists()


def test_another_scan_holding_the_lock_stops_this_one_before_anything(scan_lab: ScanLab, lab_env: Path) -> None:
    cfg = config(scan_lab.inventory("e-pass"), lab_env)
    with ScanLock(lab_env / "history.db"), pytest.raises(LockedError) as err:
        scan(cfg)
    assert err.value.exit_code is ExitCode.LOCKED
    assert "another natt-audit scan is using this history database" in str(err.value)
    assert not (lab_env / "report.json").exists() and not (lab_env / "history.db").exists()


def test_an_unusable_history_database_still_writes_the_report_and_exits_2(
    scan_lab: ScanLab, lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = lab_env / "history.db"
    db.write_bytes(b"this is not an SQLite database, not even close" * 100)
    db.chmod(0o600)  # private, as natt-audit makes it: only its content is wrong
    result = scan(config(scan_lab.inventory("e-pass"), lab_env))
    assert result.code is ExitCode.USAGE and not result.recorded
    lines = err_lines(capsys)
    assert lines[0].startswith(f"natt-audit: error: cannot open the history database {db}: ")
    assert lines[0].endswith("this scan will not be recorded (the report is still written)")
    assert lines[-1].endswith("exit 2 (usage)")
    assert json.loads((lab_env / "report.json").read_text(encoding="utf-8"))["summary"]["hosts_total"] == 1


def test_resume_skips_the_journalled_hosts_and_keeps_the_scan_id(
    scan_lab: ScanLab, lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(scan_lab.inventory("e-pass", "e-fail"), lab_env)
    inputs = load_inputs(cfg, os.environ, stdin_isatty=False)
    journalled = read("e-pass", 1).model_copy(update={"target": inputs.inventory.targets[0], "requests": 999})
    header = JournalHeader(
        "interrupted-scan",
        "2026-11-27T01:00:00Z",
        inventory_id_of(cfg, inputs.inventory),
        targets_digest(inputs.inventory.targets),
        ("baseline",),
    )
    with SqliteStore(lab_env / "history.db") as store:
        key = store.journal_key()
    journal = Journal(journal_path_for(lab_env / "history.db"), header, key, fresh=True)
    journal.append(journalled)
    journal.close()
    result = execute_scan(cfg, inputs, resume=True)
    assert result.scan.id == "interrupted-scan" and result.scan.started_at == "2026-11-27T01:00:00Z"
    report = json.loads((lab_env / "report.json").read_text(encoding="utf-8"))
    # NT 6+: the OS comes from the NTLM CHALLENGE (docs/wire.md), so a read costs 4 requests.
    assert {h["name"]: h["requests"] for h in report["hosts"]} == {"e-pass": 999, "e-fail": 4}
    assert err_lines(capsys)[0] == (
        "natt-audit: resuming scan interrupted-scan (started 2026-11-27T01:00:00Z): 1 of 2 hosts already done"
    )
    assert not journal_path_for(lab_env / "history.db").exists()
    assert result.recorded


def test_an_unusable_journal_costs_the_checkpoint_not_the_scan(
    scan_lab: ScanLab, lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal_path_for(lab_env / "history.db").mkdir(parents=True)  # a folder where the journal goes
    result = scan(config(scan_lab.inventory("e-pass"), lab_env))
    assert result.code is ExitCode.OK and result.recorded
    warnings = [line for line in err_lines(capsys) if line.startswith("natt-audit: warning: ")]
    assert len(warnings) == 2
    assert "cannot read the journal" in warnings[0] and warnings[0].endswith("; starting a new scan")
    assert warnings[1].startswith("natt-audit: warning: cannot write the checkpoint journal")
    assert warnings[1].endswith("this scan cannot be resumed")


def test_a_failed_record_is_exit_2_with_the_report_written(
    scan_lab: ScanLab, lab_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise StoreError("cannot record the scan in /x: database or disk is full")

    monkeypatch.setattr(SqliteStore, "record_scan", refuse)
    result = scan(config(scan_lab.inventory("e-pass"), lab_env))
    assert result.code is ExitCode.USAGE and not result.recorded
    lines = err_lines(capsys)
    assert lines[0] == (
        "natt-audit: error: cannot record the scan in /x: database or disk is full: "
        "the scan is not recorded (the report is still written)"
    )
    assert (lab_env / "report.json").exists()
    assert journal_path_for(lab_env / "history.db").exists()  # not recorded: still resumable


def test_a_refused_resume_keeps_the_journal_and_scans_nothing(scan_lab: ScanLab, lab_env: Path) -> None:
    first = config(scan_lab.inventory("e-pass"), lab_env)
    path = journal_path_for(lab_env / "history.db")
    with SqliteStore(lab_env / "history.db") as store:
        key = store.journal_key()
    other = JournalHeader("x", "2026-11-27T01:00:00Z", "id:other", "0" * 64, ("baseline",))
    Journal(path, other, key, fresh=True).close()
    with pytest.raises(NattError, match="cannot resume scan x: it was a scan of another inventory") as err:
        scan(first, resume=True)
    assert err.value.exit_code is ExitCode.USAGE
    assert path.exists() and not (lab_env / "report.json").exists()
    # The lock was released on the way out: the next scan runs (and discards the old checkpoint).
    assert scan(first).code is ExitCode.OK


def test_waivers_deadline_and_tls_warnings(
    scan_lab: ScanLab, lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    soon = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=3)).isoformat()
    past = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2)).isoformat()
    waivers = lab_env / "waivers.yaml"
    waivers.write_text(
        "waivers:\n"
        f"  - {{id: W-SOON, rules: [NATT-001], hosts: {{names: [e-fail]}}, justification: lab, expires: {soon}}}\n"
        f"  - {{id: W-NONE, rules: [NATT-001], hosts: {{names: [nobody]}}, justification: lab, expires: {soon}}}\n"
        f"  - {{id: W-PAST, rules: [NATT-002], hosts: {{names: [e-fail]}}, justification: lab, expires: {past}}}\n",
        encoding="utf-8",
    )
    cfg = config(
        scan_lab.inventory("e-fail", "e-slow"),
        lab_env,
        waivers=[str(waivers)],
        insecure_skip_tls_verify=True,
        history=False,
        **{"timeouts.deadline": 0.5, "timeouts.grace": 0.0},
    )
    result = scan(cfg)
    assert result.code is ExitCode.INCOMPLETE  # e-slow is cut by the deadline: an error, never a pass
    assert result.summary.hosts_by_status.get("waived") == 1
    err = capsys.readouterr().err
    assert "natt-audit: warning: TLS certificate verification is OFF" in err
    assert "natt-audit: warning: the scan deadline (0.5s) passed" in err
    assert f"natt-audit: warning: waiver W-NONE ({waivers}:3) matches no host or no loaded rule" in err
    assert f"natt-audit: warning: waiver W-SOON expires on {soon} ({waivers}:2)" in err
    assert f"natt-audit: warning: waiver W-PAST expired on {past} ({waivers}:4): it waives nothing any more" in err


def test_exports_go_to_the_spool_and_a_broken_spool_is_exit_5(
    scan_lab: ScanLab, lab_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = lab_env / "findings.ocsf.jsonl"
    cfg = config(scan_lab.inventory("e-fail"), lab_env, exports=[str(out)], history=False)
    assert scan(cfg).code is ExitCode.FINDINGS
    assert out.read_text(encoding="utf-8").count("\n") == 3  # one finding per baseline rule
    assert f"natt-audit: {out}: ok: " in capsys.readouterr().err
    blocker = lab_env / "not-a-folder"
    blocker.write_text("x", encoding="utf-8")
    inputs = load_inputs(cfg, os.environ, stdin_isatty=False)  # the spool was fine when checked...
    monkeypatch.setenv("NATT_AUDIT_SPOOL", str(blocker))  # ...and is not when the findings arrive
    result = execute_scan(cfg, inputs, environ=os.environ)
    assert result.code is ExitCode.UNDELIVERED
    lines = err_lines(capsys)
    assert any(line.startswith("natt-audit: error: ") and "nothing was exported" in line for line in lines)
    assert lines[-1].endswith("exit 5 (undelivered)")


def test_an_unwritable_report_is_an_output_error(scan_lab: ScanLab, lab_env: Path) -> None:
    # A missing folder is refused before any host (test_preflight.py); one that goes away during
    # the scan is still a clear OutputError once the report is due.
    folder = lab_env / "out"
    folder.mkdir()
    cfg = config(scan_lab.inventory("e-pass"), lab_env, output=str(folder / "r.json"))
    inputs = load_inputs(cfg, os.environ, stdin_isatty=False)
    folder.rmdir()
    with pytest.raises(OutputError, match=r"cannot write the report to .*r.json") as err:
        execute_scan(cfg, inputs, environ=os.environ)
    assert err.value.exit_code is ExitCode.USAGE


def test_inputs_are_validated_before_anything_else(
    lab_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(NattError, match="no inventory: give -i/--inventory"):
        load_inputs(Config(), os.environ, stdin_isatty=False)
    bad = tmp_path / "hosts.txt"
    bad.write_text("127.0.0.1:99999\n", encoding="utf-8")
    with pytest.raises(InventoryError) as err:
        load_inputs(config(bad, tmp_path), os.environ, stdin_isatty=False)
    assert err.value.exit_code is ExitCode.USAGE and f"{bad}:1" in str(err.value)
    good = tmp_path / "good.txt"
    good.write_text("127.0.0.1:9\n", encoding="utf-8")
    with pytest.raises(NattError, match="NATT_AUDIT_HEC_TOKEN"):
        load_inputs(config(good, tmp_path, exports=["hec+https://127.0.0.1:1"]), os.environ, stdin_isatty=False)
    monkeypatch.delenv("NATT_AUDIT_PASSWORD")
    with pytest.raises(NattError, match="no password and no terminal"):
        load_inputs(config(good, tmp_path), os.environ, stdin_isatty=False)


def test_credentials_from_the_variables_the_config_names(
    lab_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tmp_path / "good.txt"
    good.write_text("127.0.0.1:9\n", encoding="utf-8")
    monkeypatch.setenv("SVC_USER", "CORP\\svc")
    monkeypatch.setenv("SVC_PASS", "from-svc-pass")
    cfg = Config(inventory=str(good), credentials=CredentialSettings(username_env="SVC_USER", password_env="SVC_PASS"))
    creds = load_inputs(cfg, os.environ, stdin_isatty=False).credentials
    assert creds.username == "CORP\\svc" and creds.password.get_secret_value() == "from-svc-pass"


def test_stage_timings_are_logged_only_at_debug(capsys: pytest.CaptureFixture[str]) -> None:
    with stage("report"):
        pass
    assert capsys.readouterr().err == ""
    setup_logging(verbose=True)
    with stage("report"):
        pass
    line = capsys.readouterr().err
    assert line.startswith("natt-audit: debug: stage report: ") and line.endswith(" s\n")
    assert logging.getLogger("natt_audit").isEnabledFor(logging.DEBUG)


def test_no_ntlm_fallback_refuses_negotiate_addresses_at_load_with_their_line(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(
        "defaults: {transport: negotiate}\nhosts:\n  - {name: web01.corp.example.com}\n  - {name: 192.0.2.7}\n",
        encoding="utf-8",
    )
    environ = {"NATT_AUDIT_USERNAME": "CORP\\audit", "NATT_AUDIT_PASSWORD": "not-used-here"}
    allowed = load_inputs(Config(inventory=str(inventory)), environ, stdin_isatty=False)
    assert len(allowed.inventory.targets) == 2  # with the fallback, the address is read over NTLM
    with pytest.raises(InventoryError) as info:
        load_inputs(Config(inventory=str(inventory), ntlm_fallback=False), environ, stdin_isatty=False)
    assert info.value.exit_code == ExitCode.USAGE
    assert str(info.value).startswith(f"{inventory}:4: 192.0.2.7 is an IP address: with --no-ntlm-fallback")
