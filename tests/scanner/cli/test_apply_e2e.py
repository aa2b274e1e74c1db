"""`remediate --apply` and `scan --only-failing`, the real CLI against the real lab (docs/remediation.md#applying).

One lab run, in the order a user would go: scan, dry run, the refusals (no terminal, an old
report), a host changed behind the report's back, the apply (with its action log and history),
then rescans. The lab's own state (`--state-out`) is the witness of what changed on the hosts.
"""

from __future__ import annotations

import json
import os
import pty
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from scanner.collect.wsman import wmi
from scanner.collect.wsman.auth import AuthMaterial
from scanner.collect.wsman.http import Deadline
from scanner.collect.wsman.protocol import new_protocol
from scanner.collect.wsman.transport import WsmanTransport
from scanner.core.models import IPSEC_KEY, POLICYAGENT_KEY, VALUE_NAME, CollectOptions, Credentials, Target
from tests.peers.lab import RunningLab, start_lab
from tests.support.cliproc import CLI, LAB_CREDS, REPO, cli_env, run_cli
from tests.support.labstate import read_state, state_args

ESTATE = Path(__file__).parent / "data" / "estate_apply_e2e.yaml"
PLANNED = {"xp-sp2-mode2", "w2003-stray", "w10-mode2-stray", "w10-sz", "w11-dword3"}  # the planner's rows
TROUBLE = {"w10-changed", "w10-readonly", "w10-nostart"}
TIMEOUTS = ("--host-timeout", "10", "--connect-timeout", "2")


def set_value_behind_the_reports_back(lab: RunningLab, name: str, data: int) -> None:
    """Change a host's value as another admin would, between the audit and the apply."""
    address, port, _ = lab.hosts[name]
    target = Target(name=name, address=address, port=port)
    creds = Credentials(username=LAB_CREDS["NATT_AUDIT_USERNAME"], password=SecretStr(LAB_CREDS["NATT_AUDIT_PASSWORD"]))
    options = CollectOptions(host_timeout=10, connect_timeout=2)
    transport = WsmanTransport(target, AuthMaterial(creds), options, Deadline(10))
    try:
        transport.authenticate()
        assert wmi.set_dword(new_protocol(target, options, transport), POLICYAGENT_KEY, VALUE_NAME, data) == 0
    finally:
        transport.close()


@dataclass
class Story:
    """Everything the module's tests look at, in the order it happened."""

    report: Path
    initial: dict[str, Any]
    dry: subprocess.CompletedProcess[str]
    after_dry: dict[str, Any]
    no_terminal: subprocess.CompletedProcess[bytes]
    old: subprocess.CompletedProcess[str]
    after_refusals: dict[str, Any]
    applied: subprocess.CompletedProcess[str]
    log: dict[str, Any]
    db: Path
    after: dict[str, Any]
    rescan: subprocess.CompletedProcess[str]
    rescanned: dict[str, Any]
    rescan_inventory: subprocess.CompletedProcess[str]
    rescanned_inventory: dict[str, Any]
    full: dict[str, Any]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    work = tmp_path_factory.mktemp("apply-e2e")
    with start_lab(ESTATE, work, extra_args=state_args(work)) as lab:
        report = work / "report.json"
        scanned = run_cli("scan", "-i", str(lab.inventory), "-f", "json", "-o", str(report), "--no-history",
                          *TIMEOUTS, env=LAB_CREDS)
        assert scanned.returncode == 3, scanned.stderr  # one host refused: incomplete, and findings
        initial = read_state(lab)

        dry = run_cli("remediate", str(report))
        after_dry = read_state(lab)

        no_terminal = subprocess.run(
            [*CLI, "remediate", str(report), "--apply", "--no-history", *TIMEOUTS],
            stdin=subprocess.DEVNULL, capture_output=True, env=cli_env(LAB_CREDS), cwd=REPO, timeout=120, check=False,
        )
        document = json.loads(report.read_text(encoding="utf-8"))
        days_ago = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
        document["scan"]["finished_at"] = days_ago
        old_report = work / "old-report.json"
        old_report.write_text(json.dumps(document), encoding="utf-8")
        old = run_cli("remediate", str(old_report), "--apply", "--yes", "--no-history", *TIMEOUTS, env=LAB_CREDS)
        after_refusals = read_state(lab)

        set_value_behind_the_reports_back(lab, "w10-changed", 1)
        db = work / "history.db"
        log = work / "actions.json"
        applied = run_cli("remediate", str(report), "--apply", "--yes", "--log", str(log), "--db", str(db),
                          *TIMEOUTS, env=LAB_CREDS)
        after = read_state(lab)

        rescan_path = work / "rescan.json"
        rescan = run_cli("scan", "--only-failing", str(report), "-f", "json", "-o", str(rescan_path),
                         "--db", str(db), *TIMEOUTS, env=LAB_CREDS)
        by_inventory = work / "rescan-inventory.json"
        rescan_inventory = run_cli("scan", "--only-failing", str(report), "-i", str(lab.inventory), "-f", "json",
                                   "-o", str(by_inventory), "--no-history", *TIMEOUTS, env=LAB_CREDS)
        full_path = work / "full.json"
        run_cli("scan", "-i", str(lab.inventory), "-f", "json", "-o", str(full_path), "--no-history", *TIMEOUTS,
                env=LAB_CREDS)
        yield Story(
            report=report,
            initial=initial,
            dry=dry,
            after_dry=after_dry,
            no_terminal=no_terminal,
            old=old,
            after_refusals=after_refusals,
            applied=applied,
            log=json.loads(log.read_text(encoding="utf-8")),
            db=db,
            after=after,
            rescan=rescan,
            rescanned=json.loads(rescan_path.read_text(encoding="utf-8")),
            rescan_inventory=rescan_inventory,
            rescanned_inventory=json.loads(by_inventory.read_text(encoding="utf-8")),
            full=json.loads(full_path.read_text(encoding="utf-8")),
        )


def hosts_of(log: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in log["hosts"]}


def steps(host: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(a["action"], a["result"], a["reason"]) for a in host["actions"]]


def test_the_dry_run_shows_the_changes_and_changes_nothing(story: Story) -> None:
    assert story.dry.returncode == 0, story.dry.stderr
    out = story.dry.stdout
    assert "w10-sz (127.0.0.1:" in out and "REG_SZ '2' -> REG_DWORD 0" in out
    assert "restart  service PolicyAgent" in out
    assert "left out: xp-sp1: upgrade_required" in out
    assert out.rstrip().endswith("nothing was changed")
    assert story.after_dry == story.initial


def test_without_a_terminal_and_without_yes_nothing_is_applied(story: Story) -> None:
    assert story.no_terminal.returncode == 2
    assert b"no terminal to confirm on" in story.no_terminal.stderr and b"--yes" in story.no_terminal.stderr


def test_an_old_report_is_refused(story: Story) -> None:
    assert story.old.returncode == 2
    assert "longer than --max-report-age 24h" in story.old.stderr
    assert "scan again" in story.old.stderr
    assert story.after_refusals == story.initial


def test_every_planned_row_is_applied_and_now_passes(story: Story) -> None:
    hosts = hosts_of(story.log)
    assert set(hosts) == PLANNED | TROUBLE
    for name in PLANNED:
        assert hosts[name]["verdict"] == "pass", hosts[name]
        assert all(result == "done" for _, result, _ in steps(hosts[name])), hosts[name]
    assert steps(hosts["w10-mode2-stray"]) == [
        ("set_value", "done", None), ("delete_value", "done", None), ("restart_service", "done", None)
    ]
    assert steps(hosts["w2003-stray"]) == [("delete_value", "done", None)]  # a stray needs no restart
    sz = hosts["w10-sz"]["actions"][0]
    assert (sz["before"]["type"], sz["before"]["data"], sz["after"]) == (
        "REG_SZ", "2", {"name": VALUE_NAME, "type": "REG_DWORD", "data": 0}
    )
    after = story.after
    assert after["xp-sp2-mode2"]["registry"][IPSEC_KEY] == {VALUE_NAME: ["REG_DWORD", 0]}
    assert after["w2003-stray"]["registry"][POLICYAGENT_KEY] == {}
    assert after["w10-mode2-stray"]["registry"] == {POLICYAGENT_KEY: {VALUE_NAME: ["REG_DWORD", 0]}, IPSEC_KEY: {}}
    for name in ("xp-sp2-mode2", "w10-mode2-stray", "w10-sz", "w11-dword3"):
        # KB 885407: in force only once the Policy Agent has started again
        assert after[name]["policyagent"] == {"state": "Running", "effective": ["REG_DWORD", 0], "starts": 1,
                                              "stops": 1}, name
    assert story.after["w10-mode0"] == story.initial["w10-mode0"]  # passing: not planned, not touched


def test_a_host_changed_since_the_report_is_skipped(story: Story) -> None:
    host = hosts_of(story.log)["w10-changed"]
    assert steps(host) == [("set_value", "skipped", "changed_since_report"),
                           ("restart_service", "skipped", "changed_since_report")]
    assert "the report saw REG_DWORD 2, the host now holds REG_DWORD 1" in host["actions"][0]["message"]
    assert story.after["w10-changed"]["registry"][POLICYAGENT_KEY] == {VALUE_NAME: ["REG_DWORD", 1]}  # as left
    assert story.after["w10-changed"]["policyagent"]["stops"] == 0
    assert host["verdict"] == "pass"  # the rescan judges it: someone else's value passes


def test_a_denied_write_leaves_the_host_failing(story: Story) -> None:
    host = hosts_of(story.log)["w10-readonly"]
    assert steps(host) == [("set_value", "failed", "access_denied"),
                           ("restart_service", "skipped", "earlier_step_failed")]
    assert host["verdict"] == "fail" and "still failing: NATT-001" in host["detail"]
    assert story.after["w10-readonly"] == story.initial["w10-readonly"]


def test_a_policy_agent_that_does_not_start_again_is_unverified(story: Story) -> None:
    host = hosts_of(story.log)["w10-nostart"]
    assert steps(host) == [("set_value", "done", None), ("restart_service", "failed", "service_start_failed")]
    assert "StartService returned 7 (service request timeout): PolicyAgent is STOPPED" in host["actions"][1]["message"]
    assert host["verdict"] == "unverified" and "not in force" in host["detail"]
    agent = story.after["w10-nostart"]["policyagent"]
    assert agent == {"state": "Stopped", "effective": ["REG_DWORD", 2], "starts": 0, "stops": 1}


def test_the_exit_status_and_the_summary(story: Story) -> None:
    assert story.applied.returncode == 3, story.applied.stderr  # one host unverified outranks one failing
    assert story.log["exit_code"] == 3 and story.log["verified"] is True
    assert "applied to 8 hosts, verified by a rescan: 6 pass, 1 fail, 1 unverified" in story.applied.stderr
    assert "w10-nostart (127.0.0.1:" in story.applied.stdout
    assert {s["name"] for s in story.log["left_out"]} == {"xp-sp1", "win2000", "refused"}
    assert LAB_CREDS["NATT_AUDIT_PASSWORD"] not in story.applied.stdout + story.applied.stderr
    assert LAB_CREDS["NATT_AUDIT_PASSWORD"] not in json.dumps(story.log)


def test_the_apply_is_in_the_history_database(story: Story) -> None:
    with sqlite3.connect(story.db) as conn:
        applies = conn.execute("SELECT id, report_scan_id, exit_code, verified FROM applies").fetchall()
        assert len(applies) == 1 and applies[0][2:] == (3, 1)
        assert applies[0][0] == story.log["id"] and applies[0][1] == story.log["report_scan_id"]
        rows = conn.execute(
            "SELECT host, step, action, result, reason FROM apply_actions WHERE host = 'w10-nostart' ORDER BY step"
        ).fetchall()
        assert rows == [("w10-nostart", 1, "set_value", "done", None),
                        ("w10-nostart", 2, "restart_service", "failed", "service_start_failed")]
        verdicts = dict(conn.execute("SELECT name, verdict FROM apply_hosts").fetchall())
        assert verdicts["w10-readonly"] == "fail" and verdicts["w10-sz"] == "pass"


def test_only_failing_rescans_the_reports_failing_hosts(story: Story) -> None:
    original = json.loads(story.report.read_text(encoding="utf-8"))
    failing = {h["name"] for h in original["hosts"] if h["status"] == "fail"}
    assert failing == PLANNED | TROUBLE | {"xp-sp1"}  # XP SP1 fails and cannot be fixed by a value
    for rescan, done in ((story.rescanned, story.rescan), (story.rescanned_inventory, story.rescan_inventory)):
        assert done.returncode == 1, done.stderr  # xp-sp1 and the denied host still fail
        statuses = {h["name"]: h["status"] for h in rescan["hosts"]}
        assert set(statuses) == failing
        assert {name for name, status in statuses.items() if status == "fail"} == {"xp-sp1", "w10-readonly"}
    assert story.rescanned["scan"]["inventory"] == str(story.report)  # its own history, not the inventory's


def test_a_full_rescan_agrees(story: Story) -> None:
    statuses = {h["name"]: h["status"] for h in story.full["hosts"]}
    assert all(statuses[name] == "pass" for name in PLANNED)


ONE_HOST = r"""
accounts:
  - {username: 'LAB\auditor', password: 'Lab-Passw0rd!'}
hosts:
  - name: w10
    wmi_ms: 0
    registry:
      'SYSTEM\CurrentControlSet\Services\PolicyAgent':
        AssumeUDPEncapsulationContextOnSendRule: {type: REG_DWORD, data: 2}
"""


def on_a_terminal(args: list[str], answer: bytes) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdin, answer the prompt, return (exit status, stderr)."""
    primary, secondary = pty.openpty()
    try:
        child = subprocess.Popen(
            [*CLI, *args], stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=cli_env(LAB_CREDS), cwd=REPO,
        )
        os.close(secondary)
        os.write(primary, answer)
        _, err = child.communicate(timeout=120)
    finally:
        os.close(primary)
    return child.returncode, err.decode("utf-8", "replace")


def test_on_a_terminal_it_asks_first(tmp_path: Path) -> None:
    estate = tmp_path / "estate.yaml"
    estate.write_text(ONE_HOST, encoding="utf-8")
    with start_lab(estate, tmp_path / "lab", extra_args=state_args(tmp_path / "lab")) as lab:
        report = tmp_path / "report.json"
        assert run_cli("scan", "-i", str(lab.inventory), "-f", "json", "-o", str(report), "--no-history",
                       env=LAB_CREDS).returncode == 1
        args = ["remediate", str(report), "--apply", "--no-history", *TIMEOUTS]
        code, err = on_a_terminal(args, b"no\n")
        assert code == 2 and "Apply these changes to 1 hosts? Type 'yes' to go on:" in err
        assert "not confirmed: nothing was changed" in err
        assert read_state(lab)["w10"]["registry"][POLICYAGENT_KEY] == {VALUE_NAME: ["REG_DWORD", 2]}
        code, err = on_a_terminal(args, b"yes\n")
        assert code == 0, err
        assert read_state(lab)["w10"]["registry"][POLICYAGENT_KEY] == {VALUE_NAME: ["REG_DWORD", 0]}
