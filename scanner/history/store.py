"""Keep scan history: the `HistoryStore` interface and its SQLite implementation (one file, WAL).

The tables and their migrations are in scanner/history/schema.py.

The file and SQLite's `-wal` and `-shm` beside it are private: the database is created 0600
before SQLite opens it (SQLite gives `-wal` and `-shm` the database's mode), and an existing one,
or a `-wal`/`-shm` left by an earlier run, is checked first: a link, another owner or a file
others can write is refused (scanner/core/private.py, docs/security.md#shared-state-directory).

Every scan is written in one transaction (`BEGIN IMMEDIATE` ... `COMMIT`): a reader sees all of
it or none. A server database can be added behind the same `HistoryStore` protocol.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from reports.build import host_sort_key, is_covered
from reports.formats.json_report import header_json
from reports.hosts import Hosts, MemoryHosts, Report
from reports.model import HostReport, ReportDocument, ReportHeader
from scanner.core.errors import NattError
from scanner.core.models import Observation
from scanner.core.private import FILE_MODE, StateError, check_file, private_dir
from scanner.core.results import Status, host_identity
from scanner.history.applylog import ApplyRun
from scanner.history.drift import Baseline
from scanner.history.schema import AFTER, JOURNAL_KEY, MIGRATIONS, SCHEMA_VERSION


class StoreError(NattError):
    """The history database cannot be opened, read or written; the message says which and why."""


@dataclass(frozen=True)
class ScanRow:
    """One scan as listed by `natt-audit history`."""

    id: str
    inventory_id: str
    inventory: str | None
    started_at: str
    finished_at: str
    interrupted: bool
    hosts_total: int
    coverage: float
    compliance: float  # compliant hosts / read hosts, 4 decimals; 0.0 when no host was read
    by_status: Mapping[str, int]
    requests_total: int
    policies: tuple[str, ...]


@dataclass(frozen=True)
class HostRow:
    """One host of one scan, as the HTML history report charts it."""

    name: str
    status: str
    effective_mode: str | None
    tags: Mapping[str, str]


class HistoryStore(Protocol):
    """Where scans are kept. Implementations write each scan atomically."""

    def record_scan(self, header: ReportHeader, hosts: Hosts, *, inventory_id: str) -> None:
        """Store (or replace, for a resumed scan) one scan with its hosts' observations and results."""

    def scans(self, *, inventory_id: str | None = None, limit: int = 20) -> list[ScanRow]:
        """Return recent scans, newest first, optionally of one inventory only."""

    def find_scan(self, ref: str) -> ScanRow:
        """Return the scan whose id is `ref` or starts with `ref`; StoreError if none or many."""

    def load_report(self, scan_id: str) -> Report:
        """Return the report stored for a scan."""

    def previous_report(self, inventory_id: str, *, before: str) -> Report | None:
        """Return the newest complete scan of `inventory_id` started before `before`, other than it."""

    def hosts(self, scan_id: str) -> list[HostRow]:
        """Return the hosts of one scan."""

    def journal_key(self) -> bytes:
        """Return the secret key that authenticates the checkpoint journal's lines."""

    def close(self) -> None:
        """Release the database."""



def compliance_of(hosts: Iterable[HostReport]) -> float:
    """Return compliant hosts (pass, waived, n.a.) / read hosts, rounded down to 4 decimals."""
    counts = [0, 0]
    for host in hosts:
        _count_compliance(counts, host)
    return _compliance(counts)


_COMPLIANT = (Status.PASS, Status.WAIVED, Status.NOT_APPLICABLE)


def _count_compliance(counts: list[int], host: HostReport) -> None:
    """Add one host to [covered, compliant and covered]."""
    if is_covered(host):
        counts[0] += 1
        if host.status in _COMPLIANT:
            counts[1] += 1


def _compliance(counts: list[int]) -> float:
    covered, ok = counts
    if not covered:
        return 0.0
    return (ok * 10_000 // covered) / 10_000


def _migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> None:
    """Apply every migration between the file's version and `target`, each in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        current = int(row[0]) if row else 0
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"the history database has schema version {current}, newer than this natt-audit "
                f"understands ({SCHEMA_VERSION}); upgrade natt-audit"
            )
        for version in range(current + 1, target + 1):
            for statement in MIGRATIONS[version - 1].split(";"):
                if statement.strip():
                    conn.execute(statement)
            if version in AFTER:
                AFTER[version](conn)
            conn.execute("UPDATE schema_version SET version = ?", (version,))
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open, keeping the error that led here."""
    # On a full disk SQLite has already rolled the transaction back itself (SQLITE_FULL ends it):
    # a ROLLBACK then fails with "no transaction is active" and would hide the real cause.
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def why(exc: Exception, path: Path) -> str:
    """Return SQLite's message with the cause named when it is the disk or the file size limit."""
    message = str(exc)
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return message
    primary = code & 0xFF
    if primary == sqlite3.SQLITE_FULL:
        return f"the disk is full ({message})"
    if primary == sqlite3.SQLITE_IOERR:
        # SQLite reports ENOSPC as SQLITE_FULL but EFBIG (RLIMIT_FSIZE) as a plain I/O error,
        # without errno: look at the two limits a write can hit.
        limit, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if limit != resource.RLIM_INFINITY:
            return f"the file size limit was reached (RLIMIT_FSIZE, {limit} bytes; {message})"
        with contextlib.suppress(OSError):
            stats = os.statvfs(path.parent if str(path.parent) else ".")
            if stats.f_bavail * stats.f_frsize < 1024 * 1024:
                return f"the disk is full ({message})"
    return message


class SqliteStore:
    """The default `HistoryStore`: one SQLite file in WAL mode."""

    def __init__(self, path: str | Path, *, migrate_to: int = SCHEMA_VERSION) -> None:
        self.path = Path(path)
        try:
            private_dir(self.path.parent if str(self.path.parent) else ".")
            _prepare_files(self.path)
        except StateError as exc:
            raise StoreError(f"cannot open the history database {self.path}: {exc}") from None
        except OSError as exc:
            raise StoreError(f"cannot open the history database {self.path}: {exc.strerror or exc}") from None
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")  # a committed scan survives power loss
            self._conn.execute("PRAGMA foreign_keys=ON")
            _migrate(self._conn, migrate_to)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the history database {self.path}: {why(exc, self.path)}") from None

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def journal_key(self) -> bytes:
        """Return the key that authenticates this database's checkpoint journal (made with the schema)."""
        try:
            row = self._conn.execute("SELECT value FROM secrets WHERE name = ?", (JOURNAL_KEY,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the history database {self.path}: {exc}") from None
        if row is None or not isinstance(row[0], bytes) or len(row[0]) < 32:
            raise StoreError(f"the history database {self.path} has no journal key; it was changed outside natt-audit")
        return row[0]

    def schema_version(self) -> int:
        """Return the schema version of the open file."""
        return int(self._conn.execute("SELECT version FROM schema_version").fetchone()[0])

    def _transaction(self, work: Callable[[sqlite3.Connection], None]) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                work(self._conn)
                self._conn.execute("COMMIT")
            except BaseException:
                _rollback(self._conn)
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the history database {self.path}: {why(exc, self.path)}") from None

    def record_scan(self, header: ReportHeader, hosts: Hosts, *, inventory_id: str) -> None:
        """Store (or replace, for a resumed scan) one scan with its hosts' observations and results.

        Each host comes with the JSON of its raw observation (`Hosts.with_observations`; None:
        not kept). Hosts are written one at a time, never all at once.
        """
        s = header.summary
        scan = header.scan
        recorded = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        frame = header_json(header)

        def work(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM scans WHERE id = ?", (scan.id,))
            conn.execute(
                "INSERT INTO scans (id, inventory_id, inventory, started_at, finished_at, interrupted,"
                " hosts_total, hosts_pass, hosts_fail, hosts_waived, hosts_error, hosts_not_applicable,"
                " coverage, requests_total, policies, tool_version, report, compliance, recorded_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    scan.id,
                    inventory_id,
                    scan.inventory,
                    scan.started_at,
                    scan.finished_at,
                    int(scan.interrupted),
                    s.hosts_total,
                    *(s.hosts_by_status.get(st.value, 0) for st in _STATUS_COLUMNS),
                    s.coverage,
                    s.requests_total,
                    json.dumps(scan.policies),
                    header.tool.version,
                    frame,
                    0.0,  # set below, once every host has been counted
                    recorded,
                ),
            )
            counts = [0, 0]
            for h, observation in hosts.with_observations():
                _count_compliance(counts, h)
                conn.execute(
                    "INSERT INTO hosts (scan_id, name, address, port, status, tags, effective_mode,"
                    " integrity, error_stage, error_reason, observation, report)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        scan.id,
                        h.name,
                        h.address,
                        h.port,
                        h.status.value,
                        json.dumps(h.tags, sort_keys=True),
                        str(h.setting.effective_mode) if h.setting is not None else None,
                        h.setting.integrity.value if h.setting is not None else None,
                        h.error.stage.value if h.error is not None else None,
                        h.error.reason if h.error is not None else None,
                        observation,
                        h.model_dump_json(),
                    ),
                )
                conn.executemany(
                    "INSERT INTO results (scan_id, host, rule_id, finding_uid, severity, status, message)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (scan.id, h.name, r.rule_id, r.finding_id, r.severity.value, r.status.value, r.message)
                        for r in h.results
                    ],
                )
            conn.execute("UPDATE scans SET compliance = ? WHERE id = ?", (_compliance(counts), scan.id))

        self._transaction(work)

    def record_apply(self, run: ApplyRun) -> None:
        """Store one `remediate --apply` run with its hosts and steps, in one transaction."""

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO applies (id, report, report_scan_id, report_finished_at, started_at, finished_at,"
                " verified, exit_code, tool_version, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.id,
                    run.report,
                    run.report_scan_id,
                    run.report_finished_at,
                    run.started_at,
                    run.finished_at,
                    int(run.verified),
                    run.exit_code,
                    run.tool_version,
                    run.model_dump_json(),
                ),
            )
            for host in run.hosts:
                conn.execute(
                    "INSERT INTO apply_hosts (apply_id, name, address, port, verdict, detail)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (run.id, host.name, host.address, host.port, host.verdict.value, host.detail),
                )
                conn.executemany(
                    "INSERT INTO apply_actions (apply_id, host, step, action, what, before, after, result,"
                    " reason, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            run.id,
                            host.name,
                            step,
                            a.action.value,
                            a.what,
                            json.dumps(a.model_dump(mode="json")["before"]),
                            json.dumps(a.model_dump(mode="json")["after"]),
                            a.result.value,
                            a.reason,
                            a.message,
                        )
                        for step, a in enumerate(host.actions, start=1)
                    ],
                )

        self._transaction(work)

    def applies(self, *, limit: int = 20) -> list[ApplyRun]:
        """Return recorded `remediate --apply` runs, newest first."""
        try:
            rows = self._conn.execute(
                "SELECT record FROM applies ORDER BY started_at DESC, rowid DESC LIMIT ?", (limit,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the history database {self.path}: {exc}") from None
        return [ApplyRun.model_validate_json(r[0]) for r in rows]

    def apply_actions(self, apply_id: str) -> list[tuple[str, int, str, str, str | None]]:
        """Return (host, step, action, result, reason) of one run's steps, by host then step."""
        try:
            rows = self._conn.execute(
                "SELECT host, step, action, result, reason FROM apply_actions WHERE apply_id = ?"
                " ORDER BY host, step",
                (apply_id,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the history database {self.path}: {exc}") from None
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def _rows(self, where: str, params: Sequence[object], limit: int) -> list[ScanRow]:
        try:
            # `where` is one of the fixed clauses of this class; values are bound parameters.
            query = (
                "SELECT id, inventory_id, inventory, started_at, finished_at, interrupted, hosts_total,"  # noqa: S608
                " hosts_pass, hosts_fail, hosts_waived, hosts_error, hosts_not_applicable, coverage,"
                " compliance, requests_total, policies FROM scans "
                + where
                + " ORDER BY started_at DESC, recorded_at DESC, rowid DESC LIMIT ?"
            )
            cursor = self._conn.execute(
                query,
                (*params, limit),
            )
            rows = cursor.fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the history database {self.path}: {exc}") from None
        return [
            ScanRow(
                id=r[0],
                inventory_id=r[1],
                inventory=r[2],
                started_at=r[3],
                finished_at=r[4],
                interrupted=bool(r[5]),
                hosts_total=r[6],
                by_status={st.value: r[7 + i] for i, st in enumerate(_STATUS_COLUMNS)},
                coverage=r[12],
                compliance=r[13],
                requests_total=r[14],
                policies=tuple(json.loads(r[15])),
            )
            for r in rows
        ]

    def scans(self, *, inventory_id: str | None = None, limit: int = 20) -> list[ScanRow]:
        """Return recent scans, newest first, optionally of one inventory only."""
        if inventory_id is None:
            return self._rows("", (), limit)
        return self._rows("WHERE inventory_id = ?", (inventory_id,), limit)

    def find_scan(self, ref: str) -> ScanRow:
        """Return the scan whose id is `ref` or starts with `ref`; StoreError if none or many."""
        escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._rows("WHERE id = ? OR id LIKE ? ESCAPE '\\'", (ref, escaped + "%"), 3)
        exact = [r for r in rows if r.id == ref]
        if exact:
            return exact[0]
        if not rows:
            raise StoreError(f"no scan with id {ref!r} in {self.path}")
        if len(rows) > 1:
            raise StoreError(f"scan id prefix {ref!r} is ambiguous in {self.path}; give more characters")
        return rows[0]

    def load_report(self, scan_id: str) -> Report:
        """Return the report stored for a scan, its hosts in memory."""
        try:
            row = self._conn.execute("SELECT report FROM scans WHERE id = ?", (scan_id,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the history database {self.path}: {exc}") from None
        if row is None:
            raise StoreError(f"no scan with id {scan_id!r} in {self.path}")
        document = ReportDocument.model_validate_json(row[0])
        if document.hosts:
            # written before schema version 3: the whole report in one column
            return Report(document.header(), MemoryHosts.of(document.hosts))
        return Report(document.header(), MemoryHosts.of(self.host_reports(scan_id)))

    def host_reports(self, scan_id: str, order: Callable[[str], Any] = host_sort_key) -> Iterator[HostReport]:
        """Yield the report entries of one scan's hosts one at a time, sorted by `order(name)`.

        Only the names are read up front. A scan recorded before schema version 3 has no
        per-host entries: its whole report is loaded instead.
        """
        try:
            names = [
                r[0]
                for r in self._conn.execute(
                    "SELECT name FROM hosts WHERE scan_id = ? AND report IS NOT NULL", (scan_id,)
                ).fetchall()
            ]
            if not names:
                row = self._conn.execute("SELECT report FROM scans WHERE id = ?", (scan_id,)).fetchone()
                if row is not None:
                    old = ReportDocument.model_validate_json(row[0]).hosts
                    yield from sorted(old, key=lambda h: order(h.name))
                return
            for name in sorted(names, key=order):
                row = self._conn.execute(
                    "SELECT report FROM hosts WHERE scan_id = ? AND name = ?", (scan_id, name)
                ).fetchone()
                yield HostReport.model_validate_json(row[0])
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the history database {self.path}: {exc}") from None

    def previous_scan(self, inventory_id: str, *, before: str) -> ScanRow | None:
        """Return the row of the newest complete scan of `inventory_id` that is not `before`."""
        rows = self._rows("WHERE inventory_id = ? AND id != ? AND interrupted = 0", (inventory_id, before), 1)
        return rows[0] if rows else None

    def baseline_scan(
        self, inventory_id: str, *, current: str, started_at: str, min_coverage: float
    ) -> ScanRow | None:
        """Return the scan `current` (started at `started_at`) is compared with, None if none.

        The newest scan of the inventory started no later than `current`, other than it, not
        interrupted, with a coverage of at least `min_coverage`: a night where most hosts could
        not be read (a wrong password) is recorded but never becomes the baseline.
        """
        rows = self._rows(
            "WHERE inventory_id = ? AND id != ? AND interrupted = 0 AND coverage >= ? AND started_at <= ?",
            (inventory_id, current, min_coverage, started_at),
            1,
        )
        return rows[0] if rows else None

    def baseline_hosts(self, baseline: ScanRow, *, current: str, started_at: str) -> Iterator[Baseline]:
        """Yield each host of `baseline` with its last read before `current`, by host identity.

        The last read is the host's newest entry that was read in any scan of the inventory up to
        `current` (excluded): the baseline's own entry, a newer one from a scan that is not a
        baseline (low coverage, interrupted), or an older one when the baseline could not read
        it. One host at a time, two small queries each: memory stays flat.
        """
        for host in self.host_reports(baseline.id, host_identity):
            try:
                row = self._conn.execute(
                    "SELECT s.id, h.report FROM scans s JOIN hosts h ON h.scan_id = s.id AND h.name = ?"
                    " WHERE s.inventory_id = ? AND s.id != ? AND s.started_at <= ?"
                    " AND h.error_stage IS NULL AND h.integrity IS NOT NULL AND h.report IS NOT NULL"
                    " ORDER BY s.started_at DESC, s.recorded_at DESC, s.rowid DESC LIMIT 1",
                    (host.name, baseline.inventory_id, current, started_at),
                ).fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the history database {self.path}: {exc}") from None
            if row is None:
                yield Baseline(host, None)
            elif row[0] == baseline.id:
                yield Baseline(host, host)  # the usual case: the baseline read it, nothing newer did
            else:
                yield Baseline(host, HostReport.model_validate_json(row[1]))

    def previous_report(self, inventory_id: str, *, before: str) -> Report | None:
        """Return the newest complete scan of `inventory_id` that is not `before` (a scan id).

        Interrupted scans are skipped: a partial scan is a poor baseline (every host it did not
        reach would look newly unreachable).
        """
        row = self.previous_scan(inventory_id, before=before)
        return self.load_report(row.id) if row is not None else None

    def hosts(self, scan_id: str) -> list[HostRow]:
        """Return the hosts of one scan, by name."""
        try:
            rows = self._conn.execute(
                "SELECT name, status, effective_mode, tags FROM hosts WHERE scan_id = ? ORDER BY name",
                (scan_id,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the history database {self.path}: {exc}") from None
        return [HostRow(name=r[0], status=r[1], effective_mode=r[2], tags=json.loads(r[3])) for r in rows]

    def observations(self, scan_id: str) -> list[Observation]:
        """Return the raw observations stored for a scan."""
        rows = self._conn.execute(
            "SELECT observation FROM hosts WHERE scan_id = ? AND observation IS NOT NULL ORDER BY name",
            (scan_id,),
        ).fetchall()
        return [Observation.model_validate_json(r[0]) for r in rows]

    def result_count(self, scan_id: str) -> int:
        """Return how many rule results are stored for a scan."""
        return int(self._conn.execute("SELECT COUNT(*) FROM results WHERE scan_id = ?", (scan_id,)).fetchone()[0])


_STATUS_COLUMNS = (Status.PASS, Status.FAIL, Status.WAIVED, Status.ERROR, Status.NOT_APPLICABLE)

# Files SQLite keeps beside the database (WAL mode, and the rollback journal of other modes).
SIDE_FILES = ("-wal", "-shm", "-journal")


def _prepare_files(db: Path) -> None:
    """Create the database 0600 if it is new; check it and the side files SQLite will open."""
    try:
        fd = os.open(db, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        check_file(db)  # a link (even a dangling one) lands here too, and is refused
    else:
        os.fchmod(fd, FILE_MODE)  # exactly 0600 whatever the umask; -wal and -shm copy this mode
        os.close(fd)
    for suffix in SIDE_FILES:
        check_file(f"{db}{suffix}")


def open_store(path: str | Path) -> SqliteStore:
    """Open (creating and migrating as needed) the history database at `path`."""
    return SqliteStore(path)
