"""`natt-audit policy explain` on a real JSON report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scanner.cli.main import main
from scanner.core.formats import Format
from tests.support.sample_report import make_sample_report, rendered

BASE = make_sample_report()


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
