"""A password rotation does not re-alert the estate: three real nights against the lab, in process.

Night 1 reads every host; night 2 runs with a wrong password (every host auth/unauthorized,
coverage 0 %, recorded); night 3 reads them again. Reproduced on main: night 3 reported every
existing failure as new and every host as reachable again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.cli.main import main
from scanner.core.exitcodes import ExitCode
from scanner.core.logsetup import setup_logging
from tests.scanner.conftest import ScanLab
from tests.scanner.engine.test_engine_scan import config, scan


@pytest.fixture(autouse=True)
def _logging() -> Iterator[None]:
    setup_logging()
    yield
    setup_logging()


def test_the_night_after_a_wrong_password_compares_with_the_last_good_night(
    scan_lab: ScanLab, lab_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(scan_lab.inventory("e-pass", "e-fail"), lab_env)
    first = scan(cfg)
    assert first.code is ExitCode.FINDINGS
    monkeypatch.setenv("NATT_AUDIT_PASSWORD", "rotated-yesterday")
    dark = scan(cfg)
    assert dark.code is ExitCode.INCOMPLETE and dark.summary.coverage == 0.0 and dark.recorded
    monkeypatch.setenv("NATT_AUDIT_PASSWORD", "Lab-Passw0rd!")
    third = scan(cfg)
    assert third.drift is not None and third.drift.previous_scan_id == first.scan.id
    assert third.drift.new_failures == [] and third.drift.reachable_again == []
    assert third.drift.resolved_failures == [] and third.drift.newly_unreachable == []
    # `natt-audit diff` shows the same drift, and no OCSF lifecycle event to send.
    capsys.readouterr()
    assert main(["diff", "--db", str(lab_env / "history.db"), "-f", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["drift"]["previous_scan_id"] == first.scan.id
    assert shown["events"] == []
    # With the floor at 0 the wrong-password night is a baseline again, as before (documented).
    capsys.readouterr()
    assert main(["diff", "--db", str(lab_env / "history.db"), "-f", "json", "--baseline-min-coverage", "0"]) == 0
    legacy = json.loads(capsys.readouterr().out)["drift"]
    assert legacy["previous_scan_id"] == dark.scan.id
    assert [h["host"] for h in legacy["reachable_again"]] == ["e-fail", "e-pass"]
    assert legacy["new_failures"] == []  # the last read still stands: e-fail failed on night 1
