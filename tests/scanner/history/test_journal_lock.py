"""The checkpoint journal (torn tails, headers) and the database lock, with real files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scanner.history.journal import Journal, JournalError, JournalHeader, line_mac, read_journal, targets_digest
from scanner.history.lock import LockedError, ScanLock
from tests.support.nightly_helpers import read, target

KEY = b"k" * 32
HEADER = JournalHeader("scan-1", "2026-11-27T01:00:00Z", "path:/inv", targets_digest([target("a")]), ("baseline",))


def test_journal_round_trip_and_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "h.db.journal"
    assert read_journal(path, KEY) is None
    journal = Journal(path, HEADER, KEY, fresh=True)
    journal.append(read("a", 1))
    journal.append(read("b", 2))
    journal.close()
    with path.open("ab") as handle:
        handle.write(b'{"type": "host", "observation": {"tar')  # killed mid-write
    state = read_journal(path, KEY)
    assert state is not None
    assert state.header == HEADER
    assert [o.target.name for o in state.observations] == ["a", "b"]
    assert state.observations[0] == read("a", 1)
    # Reopening for a resume drops the torn tail before appending.
    again = Journal(path, HEADER, KEY, fresh=False)
    again.append(read("c", 0))
    again.remove()
    assert not path.exists()


def signed(text: bytes, scan_id: str = HEADER.scan_id, key: bytes = KEY) -> bytes:
    """Return one journal line as natt-audit writes it: text, a tab, its HMAC, a newline."""
    return text + b"\t" + line_mac(key, scan_id, text).encode() + b"\n"


def test_a_corrupt_journal_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_bytes(signed(HEADER.to_json().encode()) + signed(b"not json"))
    with pytest.raises(JournalError, match=r"j:2: unreadable"):
        read_journal(path, KEY)
    path.write_bytes(signed(b"[1, 2]", scan_id="?"))
    with pytest.raises(JournalError, match=r"j:1: unreadable journal header"):
        read_journal(path, KEY)


def test_targets_digest_changes_with_the_inventory() -> None:
    assert targets_digest([target("a")]) != targets_digest([target("a"), target("b")])
    assert targets_digest([target("a", site="x")]) != targets_digest([target("a")])


def test_the_lock_is_exclusive_across_processes_and_freed_on_exit(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from scanner.history.lock import ScanLock; "
            f"lock = ScanLock({str(db)!r}); lock.acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=rf"pid {holder.pid} since"):
            ScanLock(db).acquire()
    finally:
        holder.kill()  # SIGKILL: the kernel must still release the flock
        holder.wait()
    with ScanLock(db):
        pass
