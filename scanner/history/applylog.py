"""The record of one `remediate --apply`: every step on every host, and what the verification saw.

The same record goes to the history database (`SqliteStore.record_apply`, tables `applies`,
`apply_hosts`, `apply_actions`) and, with `--log FILE`, to a JSON file written atomically
(docs/remediation.md#the-action-log). Host-supplied text (registry data, fault messages) is data
in both: bound parameters in SQLite, JSON strings with the unsafe characters escaped in the file.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

from reports.remediation.plan import SkippedHost
from scanner.collect.remediate import ActionResult
from scanner.core.atomic import write_atomic
from scanner.core.models import Frozen
from scanner.core.sanitize import json_text

APPLY_LOG_VERSION = "1.0"


class Verdict(StrEnum):
    """Where one planned host stands after the apply (and the verification scan, unless skipped)."""

    PASS = "pass"  # noqa: S105 - a verdict, not a password: the failures the plan fixes now pass
    FAIL = "fail"  # at least one of them still fails
    UNVERIFIED = "unverified"  # the host was not reached, could not be read again, or its restart did not finish


class HostRecord(Frozen):
    """One planned host: where it is, each step, and the verdict."""

    name: str
    address: str
    port: int
    rules: list[str]  # the failing rules the plan fixes on this host
    actions: list[ActionResult]
    verdict: Verdict
    detail: str  # why this verdict, for people


class ApplyRun(Frozen):
    """One `remediate --apply` run."""

    log_version: str = APPLY_LOG_VERSION
    id: str
    tool_version: str
    report: str  # the report's path as given
    report_scan_id: str
    report_finished_at: str
    started_at: str
    finished_at: str
    verified: bool  # False with --no-verify
    exit_code: int
    hosts: list[HostRecord]
    left_out: list[SkippedHost]  # what the plan left out, with why (docs/remediation.md#what-gets-planned)


def render_log(run: ApplyRun) -> bytes:
    """Return the JSON log of a run: indented, key order as the model's, unsafe characters escaped."""
    document = json.dumps(run.model_dump(mode="json"), indent=2, ensure_ascii=False)
    return (json_text(document) + "\n").encode("utf-8")


def write_log(path: str | Path, run: ApplyRun) -> None:
    """Write the run's JSON log atomically: a reader sees the whole log or the previous file, never half."""
    write_atomic(path, render_log(run))
