"""`natt-audit policy explain` on a real JSON report."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from scanner.cli.main import main
from scanner.core.formats import Format
from tests.scanner.conftest import ScanLab
from tests.support.cliproc import CLI, LAB_CREDS, REPO, cli_env
from tests.support.sample_report import make_sample_report, rendered

BASE = make_sample_report()
BASELINE_TEXT = (REPO / "rules" / "policies" / "baseline.yaml").read_text(encoding="utf-8")


@pytest.fixture
def report_file(tmp_path: Path) -> Path:
    path = tmp_path / "report.json"
    path.write_text(rendered(BASE, Format.JSON), encoding="utf-8")
    return path


def test_explains_a_failing_host_step_by_step(report_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "explain", "--report", str(report_file), "--host", "srv-mode2", "-p", "baseline"]) == 0
    out = capsys.readouterr().out
    assert "host srv-mode2" in out
    assert "NATT-001 (high, policy baseline): fail" in out
    assert "effective_mode not_equals 2: saw 2 -> false" in out
    assert "NATT-003 (low, policy baseline): pass" in out


def test_unread_host_explains_error_for_every_rule(report_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = next(h.name for h in BASE.hosts if h.error is not None)
    assert main(["policy", "explain", "--report", str(report_file), "--host", name, "-p", "baseline"]) == 0
    out = capsys.readouterr().out
    assert "not read: " in out
    assert out.count(": error\n") == 3


def test_hostile_tags_stay_on_one_line(report_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "explain", "--report", str(report_file), "--host", "srv-stray", "-p", "baseline"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "ops\nteam" not in out


def test_unknown_host_and_bad_report_exit_2(
    report_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "explain", "--report", str(report_file), "--host", "nope"]) == 2
    assert "no host named 'nope'" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hosts": []}), encoding="utf-8")
    assert main(["policy", "explain", "--report", str(bad), "--host", "x"]) == 2
    assert "not a natt-audit JSON report" in capsys.readouterr().err


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI as a child in `cwd`."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=cli_env(LAB_CREDS), cwd=cwd, timeout=120, check=False
    )


def test_explain_from_another_directory_finds_the_policies_as_scanned(scan_lab: ScanLab, tmp_path: Path) -> None:
    scan_dir, other = tmp_path / "nightly", tmp_path / "elsewhere"
    scan_dir.mkdir()
    other.mkdir()
    (scan_dir / "site.yaml").write_text(BASELINE_TEXT.replace("name: baseline", "name: site"), encoding="utf-8")
    inventory = scan_lab.inventory("e-pass", "e-fail")
    done = _cli(scan_dir, "scan", "-i", str(inventory), "-p", "site.yaml", "-f", "json", "-o", "r.json", "--no-history")
    assert done.returncode == 1, done.stderr
    refs = json.loads((scan_dir / "r.json").read_text(encoding="utf-8"))["scan"]["policy_refs"]
    text = (scan_dir / "site.yaml").read_bytes()
    assert refs == [{"name": "site", "source": str(scan_dir / "site.yaml"), "sha256": hashlib.sha256(text).hexdigest()}]

    report = str(scan_dir / "r.json")
    done = _cli(other, "policy", "explain", "--report", report, "--host", "e-fail")
    assert done.returncode == 0, done.stderr
    assert "NATT-001 (high, policy site): fail" in done.stdout

    (scan_dir / "site.yaml").write_text(BASELINE_TEXT.replace("name: baseline", "name: site") + "# edited\n")
    done = _cli(other, "policy", "explain", "--report", report, "--host", "e-fail")
    assert done.returncode == 2
    assert done.stderr == (
        f"natt-audit: error: policy file {scan_dir / 'site.yaml'} changed since the scan (its SHA-256 differs); "
        f"give the policy file as it was at scan time with -p FILE (report {report})\n"
    )
    (scan_dir / "site.yaml").unlink()
    done = _cli(other, "policy", "explain", "--report", report, "--host", "e-fail")
    assert done.returncode == 2
    assert f"policy 'site' was read from {scan_dir / 'site.yaml'}, which no longer exists" in done.stderr

    # -p FILE still explains against the file given.
    (other / "again.yaml").write_text(BASELINE_TEXT.replace("name: baseline", "name: site"), encoding="utf-8")
    done = _cli(other, "policy", "explain", "--report", report, "--host", "e-fail", "-p", "again.yaml")
    assert done.returncode == 0, done.stderr
    assert "NATT-001 (high, policy site): fail" in done.stdout


def test_explain_finds_a_built_in_policy_by_name(scan_lab: ScanLab, tmp_path: Path) -> None:
    inventory = scan_lab.inventory("e-fail")
    done = _cli(tmp_path, "scan", "-i", str(inventory), "-p", "strict", "-f", "json", "-o", "r.json", "--no-history")
    assert done.returncode == 1, done.stderr
    refs = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["scan"]["policy_refs"]
    assert [(r["name"], r["source"]) for r in refs] == [("strict", "builtin:strict")]
    done = _cli(REPO, "policy", "explain", "--report", str(tmp_path / "r.json"), "--host", "e-fail")
    assert done.returncode == 0, done.stderr
    assert "policy strict" in done.stdout
