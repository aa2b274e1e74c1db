"""Define the history database's schema: each version's SQL and the work a migration needs besides it.

Schema (version 5; `schema_version` holds the version, `MIGRATIONS` move any older file forward;
`_migrate` in scanner/history/store.py applies them):

- `scans`: one row per scan id: inventory id and path, times, interrupted flag, host counts per
  status, coverage, requests, policies (JSON), the JSON report (`report`), and `recorded_at`.
  A resumed scan replaces its interrupted row (same id). Since version 3 `report` is the report
  without its hosts (`"hosts": []`) and each host's entry is in `hosts.report`, so a scan is
  written and read one host at a time (docs/performance.md, memory); older rows keep the whole
  report and are read as they are.
- `hosts`: one row per (scan, host): status, address, tags (JSON), effective mode, integrity,
  error stage/reason, the raw `Observation` as JSON (the facts, re-evaluable later) and (since
  version 3) the host's report entry as JSON (`report`).
- `results`: one row per (scan, host, rule): finding_uid, severity, status, message.
- `secrets` (since version 4): `journal_key`, 32 random bytes made when the table is created,
  with which every line of the checkpoint journal is authenticated (scanner/history/journal.py).
- (since version 5) `applies`: one row per `remediate --apply` run: the report it applied (scan
  id, finished_at), times, whether it verified, its exit code and the whole run as JSON (`record`);
  `apply_hosts`: one row per (run, planned host): address, port, verdict and why; `apply_actions`:
  one row per (run, host, step): action, what, before and after (JSON), result, reason, message
  (scanner/history/applylog.py, docs/remediation.md#the-action-log).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable

SCHEMA_VERSION = 5


# --- migrations: each entry moves the schema from version N-1 to N; never edit a shipped one.
_V1 = """
CREATE TABLE scans (
    id TEXT PRIMARY KEY,
    inventory_id TEXT NOT NULL,
    inventory TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    interrupted INTEGER NOT NULL,
    hosts_total INTEGER NOT NULL,
    hosts_pass INTEGER NOT NULL,
    hosts_fail INTEGER NOT NULL,
    hosts_waived INTEGER NOT NULL,
    hosts_error INTEGER NOT NULL,
    hosts_not_applicable INTEGER NOT NULL,
    coverage REAL NOT NULL,
    requests_total INTEGER NOT NULL,
    policies TEXT NOT NULL,
    tool_version TEXT NOT NULL,
    report TEXT NOT NULL
);
CREATE TABLE hosts (
    scan_id TEXT NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    port INTEGER NOT NULL,
    status TEXT NOT NULL,
    tags TEXT NOT NULL,
    effective_mode TEXT,
    integrity TEXT,
    error_stage TEXT,
    error_reason TEXT,
    observation TEXT,
    PRIMARY KEY (scan_id, name)
);
CREATE TABLE results (
    scan_id TEXT NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
    host TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    finding_uid TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (scan_id, host, rule_id)
);
"""

_V2 = """
ALTER TABLE scans ADD COLUMN compliance REAL NOT NULL DEFAULT 0;
ALTER TABLE scans ADD COLUMN recorded_at TEXT NOT NULL DEFAULT '';
CREATE INDEX scans_by_inventory ON scans (inventory_id, started_at);
CREATE INDEX results_by_finding ON results (finding_uid);
"""

# Each host's report entry, so neither writing nor reading a scan needs every host in memory.
_V3 = """
ALTER TABLE hosts ADD COLUMN report TEXT;
"""

# The key that authenticates the checkpoint journal's lines; its value is made by `_after_v4`.
_V4 = """
CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
"""

# What `remediate --apply` changed, host by host and step by step (scanner/history/applylog.py).
_V5 = """
CREATE TABLE applies (
    id TEXT PRIMARY KEY,
    report TEXT NOT NULL,
    report_scan_id TEXT NOT NULL,
    report_finished_at TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    verified INTEGER NOT NULL,
    exit_code INTEGER NOT NULL,
    tool_version TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE apply_hosts (
    apply_id TEXT NOT NULL REFERENCES applies(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    port INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (apply_id, name)
);
CREATE TABLE apply_actions (
    apply_id TEXT NOT NULL REFERENCES applies(id) ON DELETE CASCADE,
    host TEXT NOT NULL,
    step INTEGER NOT NULL,
    action TEXT NOT NULL,
    what TEXT NOT NULL,
    before TEXT,
    after TEXT,
    result TEXT NOT NULL,
    reason TEXT,
    message TEXT NOT NULL,
    PRIMARY KEY (apply_id, host, step)
);
CREATE INDEX applies_by_report ON applies (report_scan_id)
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4, _V5)
assert len(MIGRATIONS) == SCHEMA_VERSION
JOURNAL_KEY = "journal_key"


def _after_v4(conn: sqlite3.Connection) -> None:
    # os.urandom, not SQLite's randomblob(): the key is a secret, made from the OS's CSPRNG.
    conn.execute("INSERT INTO secrets (name, value) VALUES (?, ?)", (JOURNAL_KEY, os.urandom(32)))


# Work a migration needs besides its SQL, run in the same transaction right after it.
AFTER: dict[int, Callable[[sqlite3.Connection], None]] = {4: _after_v4}
