"""`natt-audit remediate` on a report the real CLI wrote from the real lab: every row, every format."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from scanner.core.models import VALUE_NAME
from tests.peers.lab import start_lab
from tests.reports.remediation.regparse import parse_reg
from tests.support.cliproc import LAB_CREDS, run_cli

HERE = Path(__file__).parent / "data"
FORMATS = ["ansible", "gpo", "powershell", "reg", "json"]
WAIVERS = """\
waivers:
  - id: W-VPN
    rules: [NATT-001]
    hosts: {names: [w10-waived]}
    justification: VPN gateway behind NAT until the IKEv2 rollout.
    expires: 2099-12-31
"""


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Scan the remediation estate through the lab and return the JSON report's path."""
    work = tmp_path_factory.mktemp("remediate-e2e")
    waivers = work / "waivers.yaml"
    waivers.write_text(WAIVERS, encoding="utf-8")
    with start_lab(HERE / "estate_remediate_e2e.yaml", work) as lab:
        report = work / "report.json"
        done = run_cli(
            "scan", "-i", str(lab.inventory), "-f", "json", "-o", str(report), "--no-history",
            "--host-timeout", "4", "--connect-timeout", "2", "--waivers", str(waivers), env=LAB_CREDS,
        )
        assert done.returncode == 3, done.stderr  # one host refused: incomplete, and findings
        yield report


@pytest.fixture(scope="module")
def planned(scanned: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Run `remediate` for every format; return the output folder and the json plan."""
    out = tmp_path_factory.mktemp("plans")
    formats = [arg for fmt in FORMATS for arg in ("-f", fmt)]
    done = run_cli("remediate", str(scanned), *formats, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "5 hosts to change (4 sets, 2 deletes, 4 restarts)" in done.stderr
    return out, json.loads((out / "json" / "plan.json").read_text(encoding="utf-8"))


def test_the_plan_covers_every_row(planned: tuple[Path, dict[str, Any]]) -> None:
    _, plan = planned
    hosts = {h["name"]: h for h in plan["hosts"]}
    assert {name: [a["action"] for a in h["actions"]] for name, h in hosts.items()} == {
        "xp-sp2-mode2": ["set_value", "restart_service"],
        "w2003-stray": ["delete_value"],
        "w10-mode2-stray": ["set_value", "delete_value", "restart_service"],
        "w10-sz": ["set_value", "restart_service"],
        "w11-dword3": ["set_value", "restart_service"],
    }
    assert hosts["xp-sp2-mode2"]["key"].endswith("\\IPsec")
    assert hosts["w2003-stray"]["actions"][0]["key"].endswith("\\PolicyAgent")
    stray = hosts["w10-mode2-stray"]["actions"][1]
    assert stray["key"].endswith("\\IPsec")
    assert stray["before"] == {"name": VALUE_NAME, "type": "REG_SZ", "data": "1'; exit #"}  # as the lab stored it
    assert hosts["w10-sz"]["actions"][0]["before"]["type"] == "REG_SZ"
    assert hosts["w11-dword3"]["actions"][0]["before"]["data"] == 3
    assert all(a["after"] == {"type": "REG_DWORD", "data": 0} for h in hosts.values() for a in h["actions"]
               if a["action"] == "set_value")
    assert {(s["name"], s["reason"]) for s in plan["skipped"]} == {
        ("xp-sp1", "upgrade_required"),
        ("win2000", "windows_2000"),
        ("refused", "not_read"),
        ("w10-waived", "waived"),
    }


def test_the_json_plan_matches_the_published_schema(planned: tuple[Path, dict[str, Any]]) -> None:
    done = run_cli("schema", "remediation")
    assert done.returncode == 0, done.stderr
    jsonschema.validate(planned[1], json.loads(done.stdout))


def test_every_format_is_written_and_readable(planned: tuple[Path, dict[str, Any]]) -> None:
    out, plan = planned
    assert sorted(p.name for p in out.iterdir()) == sorted(FORMATS)
    root = ET.parse(out / "gpo" / "Registry.xml").getroot()
    assert len(root) == 6  # 4 sets and 2 deletes
    reg_entries = [e for f in sorted((out / "reg").glob("*.reg")) for e in parse_reg(f.read_bytes())[1]]
    assert sorted(e.kind for e in reg_entries) == ["delete", "delete", "dword", "dword", "dword"]  # per change set
    script = (out / "powershell" / "Remediate-NattAudit.ps1").read_bytes().decode("utf-8-sig")
    assert all(f"Name    = '{h['name']}'" in script for h in plan["hosts"])
    inventory = (out / "ansible" / "inventory.yml").read_text(encoding="ascii")
    assert all(f'"{h["name"]}":' in inventory for h in plan["hosts"])
    assert "xp-sp1" not in inventory and "refused" not in inventory and "w10-waived" not in inventory


def test_the_playbook_passes_syntax_check(planned: tuple[Path, dict[str, Any]]) -> None:
    tool = shutil.which("ansible-playbook")
    if tool is None:
        pytest.skip("ansible-playbook is not installed (the test extra installs ansible)")
    folder = planned[0] / "ansible"
    done = subprocess.run(
        [tool, "-i", "inventory.yml", "natt-remediate.yml", "--syntax-check"],
        cwd=folder, capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_report_of_an_unknown_schema_version_is_refused(scanned: Path, tmp_path: Path) -> None:
    report = json.loads(scanned.read_text(encoding="utf-8"))
    report["schema_version"] = "9.9"
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(report), encoding="utf-8")
    done = run_cli("remediate", str(newer), "-f", "json", "-o", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "unknown report schema_version '9.9'" in done.stderr
    assert not (tmp_path / "out").exists()


def test_an_older_plan_in_the_folder_is_not_mixed_in(scanned: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "reg").mkdir(parents=True)
    (out / "reg" / "set-PolicyAgent-2.reg").write_bytes(b"old")
    done = run_cli("remediate", str(scanned), "-f", "reg", "-o", str(out))
    assert done.returncode == 2
    assert "reg/set-PolicyAgent-2.reg" in done.stderr
    assert [p.name for p in (out / "reg").iterdir()] == ["set-PolicyAgent-2.reg"]
    again = run_cli("remediate", str(scanned), "-f", "json", "-o", str(out))  # another format's folder is fine
    assert again.returncode == 0, again.stderr
    assert run_cli("remediate", str(scanned), "-f", "json", "-o", str(out)).returncode == 0  # same plan: rewritten


def test_policies_default_to_the_reports_and_can_be_given(scanned: Path, tmp_path: Path) -> None:
    strict = run_cli("remediate", str(scanned), "-p", "strict", "-f", "json", "-o", str(tmp_path / "s"))
    assert strict.returncode == 0, strict.stderr
    plan = json.loads((tmp_path / "s" / "json" / "plan.json").read_text(encoding="utf-8"))
    assert plan["hosts"] == [] and plan["source"]["policies"] == ["strict"]  # the report holds no STRICT result
    nope = str(tmp_path / "nope.yaml")
    missing = run_cli("remediate", str(scanned), "-p", nope, "-f", "json", "-o", str(tmp_path / "m"))
    assert missing.returncode == 2 and "give the policies with -p" in missing.stderr


def test_policy_commands_still_work_with_fixes() -> None:
    validate = run_cli("policy", "validate", "baseline", "strict")
    assert validate.returncode == 0, validate.stderr
    test = run_cli("policy", "test", "baseline", "strict")
    assert test.returncode == 0, test.stderr
    assert "17/17 fail examples fixed by their rule's fix" in test.stdout
