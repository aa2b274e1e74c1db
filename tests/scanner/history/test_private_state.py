"""State beside the history database and in the spool is private and never written through a link.

Reproduced on main with the database in a shared folder (0777, not sticky): a symbolic link
`history.db.lock` made the scan truncate its root-owned target, `history.db.journal.tmp` made it
overwrite the target with the journal, and `<spool>/state/<key>/<scan>.acks` made an export
append its acknowledgements to it. Real files, a real SQLite database; we run as root, so a
"foreign" file is one chown'ed to nobody.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from reports.export.destinations import parse_destination
from reports.export.spool import Spool, SpoolError
from scanner.core.atomic import write_atomic
from scanner.core.logsetup import setup_logging
from scanner.core.private import StateError
from scanner.history.journal import Journal, JournalError, JournalHeader, read_journal
from scanner.history.lock import ScanLock
from scanner.history.store import SqliteStore, StoreError
from tests.support.nightly_helpers import read

NOBODY = 65534
VICTIM = b"root-owned file that natt-audit must never touch\n"
HEADER = JournalHeader("scan-1", "2026-11-27T01:00:00Z", "path:/inv", "0" * 64, ("baseline",))
KEY = b"k" * 32
UID = "0f0e0d0c-0b0a-4908-8706-050403020100"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(VICTIM)
    return path


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)  # writable by everyone, not sticky
    return folder


@pytest.fixture
def private(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    return folder


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# --- a shared folder is refused before anything is written in it ---------------------------------


def test_a_shared_state_folder_is_refused_by_lock_store_and_spool(shared: Path, victim: Path) -> None:
    (shared / "history.db.lock").symlink_to(victim)
    with pytest.raises(StateError, match=r"writable by other users \(mode 0o777\)") as info:
        ScanLock(shared / "history.db").acquire()
    assert info.value.exit_code == 2
    with pytest.raises(StoreError, match="writable by other users"):
        SqliteStore(shared / "history.db")
    with pytest.raises(SpoolError, match="writable by other users"):
        Spool(shared).write_scan("scan-1", [])
    assert victim.read_bytes() == VICTIM
    assert sorted(p.name for p in shared.iterdir()) == ["history.db.lock"]  # nothing created


def test_a_sticky_folder_of_ours_is_accepted_and_one_of_another_user_is_not(tmp_path: Path) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    with ScanLock(sticky / "h.db"):
        pass
    os.chown(sticky, NOBODY, NOBODY)
    with pytest.raises(StateError, match="belongs to uid 65534"):
        ScanLock(sticky / "h.db").acquire()


# --- links planted at the files' own names are refused or replaced, never followed ---------------


def test_a_link_at_the_lock_name_is_refused_and_its_target_kept(private: Path, victim: Path) -> None:
    (private / "history.db.lock").symlink_to(victim)
    with pytest.raises(StateError, match="is a symbolic link: refused, never followed"):
        ScanLock(private / "history.db").acquire()
    assert victim.read_bytes() == VICTIM


def test_a_hard_link_at_the_lock_name_is_refused(private: Path, victim: Path) -> None:
    os.link(victim, private / "history.db.lock")
    with pytest.raises(StateError, match="has 2 hard links"):
        ScanLock(private / "history.db").acquire()
    assert victim.read_bytes() == VICTIM


def test_the_journal_never_writes_through_a_planted_link(private: Path, victim: Path) -> None:
    journal = private / "history.db.journal"
    (private / "history.db.journal.tmp").symlink_to(victim)  # the fixed temp name of old
    Journal(journal, HEADER, KEY, fresh=True).close()
    assert victim.read_bytes() == VICTIM
    assert not journal.is_symlink() and mode(journal) == 0o600
    # A link at the journal's own name: replaced by the rename, never written through...
    journal.unlink()
    journal.symlink_to(victim)
    Journal(journal, HEADER, KEY, fresh=True).close()
    assert victim.read_bytes() == VICTIM and not journal.is_symlink()
    # ...and never read through.
    journal.unlink()
    journal.symlink_to(victim)
    with pytest.raises(JournalError, match="symbolic link"):
        read_journal(journal, KEY)


def test_an_acks_link_in_the_spool_is_refused_and_nothing_appended(private: Path, victim: Path) -> None:
    spool = Spool(private / "spool")
    destination = parse_destination(str(private / "out.jsonl"))
    folder = spool.state / destination.key
    spool.register(destination)
    (folder / "scan-1.acks").symlink_to(victim)
    with pytest.raises(SpoolError, match="symbolic link"):
        spool.mark(destination, "scan-1", [UID] * 60)
    assert victim.read_bytes() == VICTIM
    with pytest.raises(SpoolError, match="symbolic link"):
        spool.done(destination, "scan-1")


def test_an_acks_file_of_another_user_is_refused(private: Path) -> None:
    spool = Spool(private / "spool")
    destination = parse_destination(str(private / "out.jsonl"))
    spool.mark(destination, "scan-1", [UID])
    acks = spool.state / destination.key / "scan-1.acks"
    os.chown(acks, NOBODY, NOBODY)
    with pytest.raises(SpoolError, match="belongs to uid 65534"):
        spool.done(destination, "scan-1")


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_the_database_and_its_wal_and_shm_are_checked_before_sqlite_opens_them(
    private: Path, victim: Path, suffix: str
) -> None:
    db = private / "history.db"
    SqliteStore(db).close()
    side = Path(f"{db}{suffix}")
    side.unlink(missing_ok=True)
    side.symlink_to(victim)
    with pytest.raises(StoreError, match="symbolic link"):
        SqliteStore(db)
    assert victim.read_bytes() == VICTIM
    side.unlink()
    if suffix:
        side.write_bytes(b"")
        os.chown(side, NOBODY, NOBODY)
        with pytest.raises(StoreError, match="belongs to uid 65534"):
            SqliteStore(db)


def test_a_database_others_can_write_is_refused_and_one_they_can_read_is_tightened(
    private: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging()  # the warning goes to stderr as the CLI logs it
    db = private / "history.db"
    SqliteStore(db).close()
    db.chmod(0o666)
    with pytest.raises(StoreError, match=r"writable by other users \(mode 0o666\)"):
        SqliteStore(db)
    db.chmod(0o644)  # what natt-audit itself used to create
    SqliteStore(db).close()
    assert mode(db) == 0o600
    warned = f"natt-audit: warning: {db} was readable by other users (mode 0o644); made it 0600\n"
    assert capsys.readouterr().err == warned


# --- created private whatever the umask -----------------------------------------------------------


def test_state_is_0600_in_0700_folders_whatever_the_umask(tmp_path: Path, umask_000: None) -> None:
    db = tmp_path / "new" / "deeper" / "history.db"
    with ScanLock(db), SqliteStore(db) as store:
        Journal(Path(f"{db}.journal"), HEADER, store.journal_key(), fresh=True).close()
        # WAL mode: -wal and -shm exist while the database is open; SQLite gives them its mode.
        store.record_scan(*_report(), inventory_id="inv")
        for name in ("history.db", "history.db-wal", "history.db-shm", "history.db.lock", "history.db.journal"):
            assert mode(db.parent / name) == 0o600, name
    assert mode(db.parent) == 0o700 and mode(db.parent.parent) == 0o700
    spool = Spool(tmp_path / "spool")
    destination = parse_destination(str(tmp_path / "out.jsonl"))
    spool.write_scan("scan-1", [])
    spool.register(destination)
    spool.mark(destination, "scan-1", [UID])
    for path in (spool.root, spool.scans, spool.state, spool.state / destination.key):
        assert mode(path) == 0o700, path
    for path in (spool.scan_path("scan-1"), spool.state / destination.key / "scan-1.acks"):
        assert mode(path) == 0o600, path
    report = tmp_path / "report.json"
    write_atomic(report, b"{}")
    assert mode(report) == 0o600


def _report() -> tuple[object, object]:
    from tests.support.nightly_helpers import report

    built = report([read("a", 0)])
    return built.header, built.hosts


def test_the_journal_key_is_random_per_database_and_made_with_the_schema(private: Path) -> None:
    with SqliteStore(private / "a.db") as a, SqliteStore(private / "b.db") as b:
        assert len(a.journal_key()) == 32 and a.journal_key() != b.journal_key()
    conn = sqlite3.connect(private / "a.db")
    assert conn.execute("SELECT COUNT(*) FROM secrets").fetchone()[0] == 1
    conn.close()
