"""docs/reliability.md#full-disk: disk full while writing the report or the spool: a clear error, the previous file
intact, no truncated file under the final name.

Two real ways to run out of space: a 16 KiB tmpfs mounted for the test (we are root in this
container; unmounted in the finaliser), and RLIMIT_FSIZE in the scanner's child process (Python
ignores SIGXFSZ, so the write fails with EFBIG).
"""

from __future__ import annotations

import resource
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reports.export.spool import Spool, SpoolError
from reports.findings import flatten
from reports.hosts import parse_report
from tests.peers.hostile_lab import CREDS, Scanned
from tests.support.cliproc import natt_audit

PREVIOUS = b'{"previous": "report", "intact": true}\n'


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _scan(scanned: Scanned, out: Path, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    # Well-behaved hosts only, so the run is quick; the report (~20 KB) cannot fit in 16 KiB.
    return natt_audit(
        "scan",
        "-i",
        str(scanned.lab.inventory),
        "-f",
        "json",
        "-o",
        str(out),
        "--host-timeout",
        "2",
        "--connect-timeout",
        "1",
        env=CREDS,
        **kwargs,
    )  # type: ignore[arg-type]


def _check(out: Path, proc: subprocess.CompletedProcess[bytes], words: bytes) -> None:
    assert proc.returncode not in (0, 1, 3), "a report that was not written must not look like success"
    assert b"cannot write the report" in proc.stderr and words in proc.stderr, proc.stderr
    assert out.read_bytes() == PREVIOUS
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.json"]  # temp file cleaned up
    assert b"Traceback" not in proc.stderr


def test_report_on_a_full_disk(scanned: Scanned, small_disk: Path) -> None:
    out = small_disk / "report.json"
    out.write_bytes(PREVIOUS)
    _check(out, _scan(scanned, out), b"No space left on device")


def test_report_over_the_file_size_limit(scanned: Scanned, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "report.json"
    out.write_bytes(PREVIOUS)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

    proc = subprocess.run(
        [
            "python",
            "-c",
            "from scanner.cli.main import entry_point; entry_point()",
            "scan",
            "-i",
            str(scanned.lab.inventory),
            "-f",
            "json",
            "-o",
            str(out),
            "--host-timeout",
            "2",
            "--connect-timeout",
            "1",
            # The limit applies to every file of the child; keep the history database out of it.
            "--no-history",
        ],
        capture_output=True,
        env={**_env(), **CREDS},
        preexec_fn=limit,
        timeout=60,
        check=False,
    )
    _check(out, proc, b"too large")


def _env() -> dict[str, str]:
    import os

    from tests.peers.hostile_lab import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith("NATT_AUDIT_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def test_spool_on_a_full_disk(scanned: Scanned, small_disk: Path) -> None:
    header, hosts = parse_report(scanned.report_bytes)
    findings = list(flatten(header, hosts))
    spool = Spool(small_disk / "spool")
    first = spool.write_scan(header.scan.id, findings[:2])  # small enough to fit
    before = first.read_bytes()
    with pytest.raises(SpoolError) as info:
        spool.write_scan(header.scan.id, findings)
    assert "No space left on device" in str(info.value)
    assert first.read_bytes() == before
    assert sorted(p.name for p in first.parent.iterdir()) == [first.name]


# --- the history database: the message names the real cause ---------------------------------------
# Reproduced on main: a full disk while recording a scan was reported as "cannot rollback - no
# transaction is active" (SQLite had already rolled back; the second ROLLBACK hid the cause).

_RECORD_BIG = """
import resource, sys
from scanner.history.store import SqliteStore, StoreError
from tests.support.nightly_helpers import read, report
store = SqliteStore(sys.argv[1])
small = report([read("a", 1)], scan_id="small-scan")
store.record_scan(small.header, small.hosts, inventory_id="inv")
if sys.argv[2] == "fsize":
    import os
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(sys.argv[1]) + 8192, resource.RLIM_INFINITY))
big = report([read(f"h{i:04}", i % 3) for i in range(2000)], scan_id="big-scan")
try:
    store.record_scan(big.header, big.hosts, inventory_id="inv")
except StoreError as exc:
    print(exc)
store.close()
"""


def _record_big(db: Path, mode: str) -> str:
    from tests.peers.hostile_lab import REPO

    done = subprocess.run(
        ["python", "-c", _RECORD_BIG, str(db), mode],
        capture_output=True,
        env={**_env(), "PYTHONPATH": str(REPO)},
        timeout=120,
        check=True,
    )
    return done.stdout.decode()


@pytest.fixture
def quarter_mb_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _kept_only_the_small_scan(db: Path) -> None:
    from scanner.history.store import SqliteStore

    with SqliteStore(db) as store:  # still usable: the failed scan left nothing half-written
        assert [row.id for row in store.scans()] == ["small-scan"]


def test_history_on_a_full_disk_says_the_disk_is_full(quarter_mb_disk: Path) -> None:
    db = quarter_mb_disk / "history.db"
    message = _record_big(db, "full")
    assert "the disk is full (database or disk is full)" in message, message
    assert "rollback" not in message
    subprocess.run(["mount", "-o", "remount,size=64m", str(quarter_mb_disk)], check=True)
    _kept_only_the_small_scan(db)


def test_history_over_the_file_size_limit_says_so(tmp_path: Path) -> None:
    db = tmp_path / "state" / "history.db"
    message = _record_big(db, "fsize")
    assert "the file size limit was reached (RLIMIT_FSIZE" in message, message
    assert "rollback" not in message
    _kept_only_the_small_scan(db)
