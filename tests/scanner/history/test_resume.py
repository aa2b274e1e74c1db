"""Every branch of the resume decision (scanner/history/resume.py), with real journal files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from scanner.core.exitcodes import ExitCode
from scanner.core.models import Credentials
from scanner.history.journal import (
    BreakerStop,
    Journal,
    JournalError,
    JournalHeader,
    line_mac,
    read_journal,
    targets_digest,
)
from scanner.history.resume import ScanStart, plan_start
from scanner.inputs.credentials import credential_fingerprint
from tests.support.nightly_helpers import read, target

TARGETS = [target("a"), target("b"), target("c")]
INVENTORY = "path:/etc/natt-audit/hosts.yaml"
POLICIES = ("baseline",)
KEY = b"k" * 32
OLD = JournalHeader("old-scan", "2026-11-27T01:00:00Z", INVENTORY, targets_digest(TARGETS), POLICIES)


def journal_with(path: Path, header: JournalHeader = OLD, done: tuple[str, ...] = ("a", "b")) -> Path:
    """Write a journal of an interrupted scan that finished the hosts `done`."""
    journal = Journal(path, header, KEY, fresh=True)
    for name in done:
        journal.append(read(name, 1))
    journal.close()
    return path


def plan(path: Path, *, resume: bool, **overrides: object) -> ScanStart:
    kwargs: dict[str, object] = {
        "key": KEY,
        "inventory_id": INVENTORY,
        "targets": TARGETS,
        "policies": POLICIES,
        "resume": resume,
        "new_id": lambda: "new-scan",
        "now": lambda: "2026-11-28T01:00:00Z",
    }
    kwargs.update(overrides)
    return plan_start(path, **kwargs)  # type: ignore[arg-type]


def levels(start: ScanStart) -> list[tuple[int, str]]:
    return [(note.level, note.message) for note in start.notes]


def test_no_journal_is_a_fresh_scan_without_a_word(tmp_path: Path) -> None:
    start = plan(tmp_path / "h.db.journal", resume=False)
    assert (start.scan_id, start.started_at, start.resumed, start.done, start.notes) == (
        "new-scan",
        "2026-11-28T01:00:00Z",
        False,
        (),
        (),
    )
    assert start.header == JournalHeader("new-scan", "2026-11-28T01:00:00Z", INVENTORY, OLD.targets_digest, POLICIES)


def test_resume_with_nothing_to_resume_starts_a_new_scan_and_says_so(tmp_path: Path) -> None:
    start = plan(tmp_path / "h.db.journal", resume=True)
    assert start.scan_id == "new-scan" and not start.resumed
    assert levels(start) == [(logging.INFO, "nothing to resume in this database; starting a new scan")]


def test_a_torn_header_counts_as_no_journal(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_bytes(b'{"type": "start", "scan_id": "ha')  # killed while writing line 1
    start = plan(path, resume=True)
    assert start.scan_id == "new-scan" and not start.resumed


def test_resume_keeps_the_scan_id_start_and_finished_hosts(tmp_path: Path) -> None:
    start = plan(journal_with(tmp_path / "j"), resume=True)
    assert start.resumed
    assert (start.scan_id, start.started_at) == ("old-scan", "2026-11-27T01:00:00Z")
    assert start.header == OLD
    assert [o.target.name for o in start.done] == ["a", "b"]
    assert levels(start) == [
        (logging.INFO, "resuming scan old-scan (started 2026-11-27T01:00:00Z): 2 of 3 hosts already done")
    ]
    assert start.notes[0].fields == {"scan_id": "old-scan", "done": 2}


def test_a_journal_of_another_inventory_is_refused(tmp_path: Path) -> None:
    path = journal_with(tmp_path / "j")
    with pytest.raises(JournalError, match=r"cannot resume scan old-scan: it was a scan of another inventory") as err:
        plan(path, resume=True, inventory_id="path:/elsewhere.yaml")
    assert err.value.exit_code is ExitCode.USAGE
    assert path.exists()  # refused: the checkpoint is kept for the right invocation


def test_a_changed_inventory_is_refused(tmp_path: Path) -> None:
    path = journal_with(tmp_path / "j")
    with pytest.raises(JournalError, match=r"inventory changed since \(path:/etc/natt-audit/hosts.yaml\)"):
        plan(path, resume=True, targets=[*TARGETS, target("d")])


def test_other_policies_are_refused(tmp_path: Path) -> None:
    path = journal_with(tmp_path / "j")
    with pytest.raises(JournalError, match=r"ran with policies \['baseline'\], not \['baseline', 'strict'\]"):
        plan(path, resume=True, policies=("baseline", "strict"))


def test_without_resume_a_leftover_journal_is_discarded_with_a_warning(tmp_path: Path) -> None:
    start = plan(journal_with(tmp_path / "j"), resume=False)
    assert start.scan_id == "new-scan" and not start.resumed and start.done == ()
    assert levels(start) == [
        (logging.WARNING, "discarding the checkpoint of interrupted scan old-scan (use --resume to continue it)")
    ]


def test_an_unreadable_journal_refuses_resume(tmp_path: Path) -> None:
    path = tmp_path / "j"
    text = OLD.to_json().encode()
    path.write_bytes(text + b"\t" + line_mac(KEY, "old-scan", text).encode() + b"\nnot json\n")
    with pytest.raises(JournalError, match=r"j:2: the line carries no authentication code.*; run without --resume"):
        plan(path, resume=True)


def test_an_unreadable_journal_without_resume_starts_a_new_scan_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_bytes(b"[1, 2]\n")
    start = plan(path, resume=False)
    assert start.scan_id == "new-scan" and not start.resumed
    assert len(start.notes) == 1 and start.notes[0].level == logging.WARNING
    assert start.notes[0].message.endswith("no authentication code; natt-audit did not write it; starting a new scan")


def test_fresh_ids_are_unique_rfc3339_by_default(tmp_path: Path) -> None:
    given = {"key": KEY, "inventory_id": INVENTORY, "targets": TARGETS, "policies": POLICIES, "resume": False}
    first = plan_start(tmp_path / "j", **given)  # type: ignore[arg-type]
    second = plan_start(tmp_path / "j", **given)  # type: ignore[arg-type]
    assert first.scan_id != second.scan_id and len(first.scan_id) == 36
    assert first.started_at.endswith("Z") and first.started_at[10] == "T"


# --- after a lockout-breaker stop (docs/authentication.md#lockout-safety) ---

RIGHT = Credentials(username="CORP\\svc-audit", password=SecretStr("Autumn-2026!"))
ROTATED = Credentials(username="CORP\\svc-audit", password=SecretStr("Winter-2027!"))


def stopped_journal(path: Path, credentials: Credentials) -> Path:
    """Write the journal a breaker stop leaves: the header alone, marked, with the credentials' fingerprint."""
    journal = Journal(path, OLD, KEY, fresh=True)
    journal.append(read("a", 1))
    journal.mark_breaker(
        BreakerStop("credentials rejected by 3 hosts; stopped", "2026-11-27T01:02:00Z"),
        credential_fingerprint(credentials),
    )
    return path


def test_a_breaker_stop_leaves_only_its_marked_header(tmp_path: Path) -> None:
    path = stopped_journal(tmp_path / "h.db.journal", RIGHT)
    state = read_journal(path, KEY)
    assert state is not None and state.observations == ()
    assert state.header.breaker == BreakerStop("credentials rejected by 3 hosts; stopped", "2026-11-27T01:02:00Z")
    assert state.header.credential is not None and state.header.credential.matches(RIGHT)
    assert not state.header.credential.matches(ROTATED)


def test_resume_with_the_credentials_the_breaker_stopped_is_refused(tmp_path: Path) -> None:
    path = stopped_journal(tmp_path / "h.db.journal", RIGHT)
    with pytest.raises(JournalError) as refused:
        plan(path, resume=True, credentials=RIGHT)
    assert refused.value.exit_code is ExitCode.USAGE
    message = str(refused.value)
    assert message.startswith("not resuming: scan old-scan was stopped at 2026-11-27T01:02:00Z")
    assert "same credentials (CORP\\svc-audit)" in message and "fix the password" in message
    assert "Autumn" not in message
    assert path.exists()  # still there for the next night's refusal


def test_a_changed_username_or_password_is_other_credentials(tmp_path: Path) -> None:
    path = stopped_journal(tmp_path / "h.db.journal", RIGHT)
    other_user = Credentials(username="CORP\\svc-audit2", password=RIGHT.password)
    for credentials in (ROTATED, other_user):
        start = plan(path, resume=True, credentials=credentials)
        assert (start.scan_id, start.resumed, start.done, start.same_credentials) == ("new-scan", False, (), False)
        assert levels(start) == [
            (
                logging.INFO,
                "scan old-scan was stopped at 2026-11-27T01:02:00Z: credentials rejected by 3 hosts; stopped; "
                "the credentials changed since, so a new scan starts",
            )
        ]
        assert start.header.credential is not None and start.header.credential.matches(credentials)


def test_without_resume_the_same_credentials_scan_again_with_a_warning(tmp_path: Path) -> None:
    path = stopped_journal(tmp_path / "h.db.journal", RIGHT)
    start = plan(path, resume=False, credentials=RIGHT)
    assert start.scan_id == "new-scan" and not start.resumed
    assert levels(start)[0][0] == logging.WARNING and "same credentials" in levels(start)[0][1]


def test_a_username_differing_only_in_case_is_the_same_account(tmp_path: Path) -> None:
    path = stopped_journal(tmp_path / "h.db.journal", RIGHT)
    shouted = Credentials(username="corp\\SVC-AUDIT", password=RIGHT.password)
    with pytest.raises(JournalError):
        plan(path, resume=True, credentials=shouted)


def test_a_resumed_interrupted_scan_knows_whether_its_credentials_are_the_same(tmp_path: Path) -> None:
    header = dataclasses.replace(OLD, credential=credential_fingerprint(RIGHT))
    path = journal_with(tmp_path / "h.db.journal", header)
    assert plan(path, resume=True, credentials=RIGHT).same_credentials
    assert not plan(path, resume=True, credentials=ROTATED).same_credentials


def test_fingerprints_are_salted_and_never_the_secret() -> None:
    one, two = credential_fingerprint(RIGHT), credential_fingerprint(RIGHT)
    assert one.salt != two.salt and one.digest != two.digest
    assert one.matches(RIGHT) and two.matches(RIGHT)
    text = json.dumps(one.to_json())
    assert "Autumn-2026!" not in text and hashlib.sha256(b"Autumn-2026!").hexdigest() not in text
    assert not one.matches(RIGHT, kind="keytab")  # another kind of secret is other credentials


@pytest.mark.parametrize(
    "stored",
    [
        "not an object",
        {"version": 2, "kind": "password", "salt": "00" * 16, "digest": "00" * 32},
        {"version": 1, "kind": "password", "salt": "zz", "digest": "00" * 32},
        {"version": 1, "kind": "password", "salt": "00" * 16, "digest": "00" * 8},
    ],
)
def test_a_damaged_fingerprint_makes_the_journal_unusable(tmp_path: Path, stored: object) -> None:
    path = tmp_path / "h.db.journal"
    head = json.loads(OLD.to_json())
    head["credential"] = stored
    text = json.dumps(head)  # authenticated, so the damage is in the fingerprint, not the MAC
    path.write_text(text + "\t" + line_mac(KEY, OLD.scan_id, text.encode("utf-8")) + "\n", encoding="utf-8")
    with pytest.raises(JournalError, match="unreadable journal header"):
        plan(path, resume=True, credentials=RIGHT)
