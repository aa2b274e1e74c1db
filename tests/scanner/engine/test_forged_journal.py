"""A forged resume journal is refused, never recorded as the night's facts.

Reproduced on main: lines appended to the journal by another user made `scan --resume` record
195 pass / 5 fail where an honest scan of the same estate gives 172 / 28. In-process scans of
the shared lab (tests/scanner/conftest.py); the journal is written as natt-audit writes it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.core.errors import NattError
from scanner.core.exitcodes import ExitCode
from scanner.core.logsetup import setup_logging
from scanner.engine.inputs import load_inputs
from scanner.engine.scan import inventory_id_of
from scanner.history.journal import Journal, JournalHeader, journal_path_for, line_mac, targets_digest
from scanner.history.store import SqliteStore
from tests.scanner.conftest import ScanLab
from tests.scanner.engine.test_engine_scan import config, err_lines, scan
from tests.support.nightly_helpers import read

NOBODY = 65534


@pytest.fixture(autouse=True)
def _logging() -> Iterator[None]:
    """Log as the CLI does (plain, to stderr), so the warnings are read as a user sees them."""
    setup_logging()
    yield
    setup_logging()


def interrupted(scan_lab: ScanLab, lab_env: Path) -> tuple[Path, object, bytes]:
    """Leave the journal of an interrupted scan of e-pass and e-fail that finished e-pass; return it."""
    cfg = config(scan_lab.inventory("e-pass", "e-fail"), lab_env)
    inputs = load_inputs(cfg, os.environ, stdin_isatty=False)
    header = JournalHeader(
        "interrupted-scan",
        "2026-11-27T01:00:00Z",
        inventory_id_of(cfg, inputs.inventory),
        targets_digest(inputs.inventory.targets),
        ("baseline",),
    )
    with SqliteStore(lab_env / "history.db") as store:
        key = store.journal_key()
    path = journal_path_for(lab_env / "history.db")
    journal = Journal(path, header, key, fresh=True)
    journal.append(read("e-pass", 1).model_copy(update={"target": inputs.inventory.targets[0]}))
    journal.close()
    return path, cfg, key


def forged_line(scan_lab: ScanLab, lab_env: Path, mac: str) -> bytes:
    """Return a journal line claiming that e-fail (mode 2 in the lab) holds a compliant 1."""
    cfg = config(scan_lab.inventory("e-pass", "e-fail"), lab_env)
    target = load_inputs(cfg, os.environ, stdin_isatty=False).inventory.targets[1]
    observation = read("e-fail", 1).model_copy(update={"target": target})
    text = json.dumps({"type": "host", "observation": observation.model_dump(mode="json")}, sort_keys=True)
    return text.encode() + b"\t" + mac.encode() + b"\n"


@pytest.mark.parametrize("mac", ["", "0" * 64, "other-key"])
def test_appended_lines_without_the_key_refuse_the_resume(
    scan_lab: ScanLab, lab_env: Path, capsys: pytest.CaptureFixture[str], mac: str
) -> None:
    path, cfg, _ = interrupted(scan_lab, lab_env)
    if mac == "other-key":  # a well-formed code, under a key of the forger's own database
        text = forged_line(scan_lab, lab_env, "x").rpartition(b"\t")[0]
        mac = line_mac(b"f" * 32, "interrupted-scan", text)
    line = forged_line(scan_lab, lab_env, mac)
    if not mac:
        line = line.replace(b"\t\n", b"\n")  # no code at all
    with path.open("ab") as handle:
        handle.write(line)
    with pytest.raises(NattError, match=r"history\.db\.journal:3: the line") as info:
        scan(cfg, resume=True)  # type: ignore[arg-type]
    assert info.value.exit_code is ExitCode.USAGE
    assert "run without --resume" in str(info.value)
    assert not (lab_env / "report.json").exists()  # nothing scanned, nothing recorded
    assert path.exists()
    with SqliteStore(lab_env / "history.db") as store:
        assert store.scans() == []
    # Without --resume the forged checkpoint is discarded with a warning and the truth is scanned.
    capsys.readouterr()
    result = scan(cfg)  # type: ignore[arg-type]
    assert result.code is ExitCode.FINDINGS
    assert result.summary.hosts_by_status == {"pass": 1, "fail": 1, "error": 0, "not_applicable": 0, "waived": 0}
    warned = [line for line in err_lines(capsys) if line.endswith("; starting a new scan")]
    assert len(warned) == 1 and "history.db.journal:3: the line" in warned[0]


def test_an_honest_journal_resumes(scan_lab: ScanLab, lab_env: Path) -> None:
    _, cfg, _ = interrupted(scan_lab, lab_env)
    result = scan(cfg, resume=True)  # type: ignore[arg-type]
    assert result.scan.id == "interrupted-scan" and result.recorded


@pytest.mark.parametrize("change", ["owner", "mode"])
def test_a_journal_of_another_user_or_writable_by_others_refuses_the_resume(
    scan_lab: ScanLab, lab_env: Path, change: str
) -> None:
    path, cfg, _ = interrupted(scan_lab, lab_env)
    if change == "owner":
        os.chown(path, NOBODY, NOBODY)
        expected = "belongs to uid 65534"
    else:
        path.chmod(0o666)
        expected = r"writable by other users \(mode 0o666\)"
    with pytest.raises(NattError, match=expected) as info:
        scan(cfg, resume=True)  # type: ignore[arg-type]
    assert info.value.exit_code is ExitCode.USAGE
    assert not (lab_env / "report.json").exists()
