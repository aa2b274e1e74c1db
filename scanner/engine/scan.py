"""Run a whole `scan`: validated inputs and settings in, the report written and an exit code out.

`load_inputs` (scanner/engine/inputs.py) reads and validates every input before the first
packet (any problem is a `NattError`, exit 2). `execute_scan` then, with history on (the default):
takes the database's lock (exit 4 when another scan holds it), opens the history, decides between
resuming and a new scan id (scanner/history/resume.py), journals every finished host so `--resume`
can continue an interrupted run, collects and evaluates (scanner/engine/run.py), computes drift
against the previous complete scan of the same inventory, records the scan in one transaction and
only then drops the journal; it writes the report, exports the findings and logs the one-line summary.
An unusable history database never stops the scan: the report is written and the exit is 2.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reports.export.destinations import Destination
from reports.export.ship import export_report
from reports.export.spool import SpoolError, default_spool_dir
from reports.hosts import Hosts
from reports.model import Drift, ReportHeader, ScanInfo, Summary
from scanner.collect.wsman.auth import AuthMaterial
from scanner.core.errors import OutputError
from scanner.core.exitcodes import ExitCode, combine
from scanner.core.formats import Format
from scanner.core.logsetup import fields
from scanner.core.models import Observation
from scanner.core.private import StateError
from scanner.core.wording import count, percent
from scanner.engine.inputs import ScanInputs, collect_options
from scanner.engine.run import ScanOutcome, ScanRequest, now_rfc3339, run_scan, stage, write_report
from scanner.history.drift import by_identity, drift_between, drift_counts
from scanner.history.journal import BreakerStop, Journal, journal_path_for
from scanner.history.lock import ScanLock
from scanner.history.resume import ScanStart, plan_start
from scanner.history.store import SqliteStore, StoreError, open_store
from scanner.inputs.config import Config, database_path, format_duration
from scanner.inputs.inventory import Inventory

log = logging.getLogger("natt_audit.engine")


@dataclass(frozen=True)
class ScanResult:
    """What a finished scan leaves besides its report: the exit code and the report's head."""

    code: ExitCode
    scan: ScanInfo
    summary: Summary
    drift: Drift | None
    recorded: bool  # the scan is in the history database




def inventory_id_of(config: Config, inventory: Inventory) -> str:
    """Return the inventory's identity for drift and resume: the configured id, else its real path."""
    if config.inventory_id:
        return config.inventory_id
    return "path:" + str(Path(inventory.path).resolve())


def summary_line(report: ReportHeader, code: ExitCode) -> str:
    """Return the one-line summary logged after every scan."""
    s = report.summary
    by = s.hosts_by_status
    parts = ", ".join(f"{by.get(k, 0)} {k}" for k in ("pass", "fail", "waived", "error", "not_applicable"))
    flag = " (interrupted)" if report.scan.interrupted else ""
    return (
        f"scanned {count(s.hosts_total, 'host')}{flag}: {parts}; coverage {percent(s.coverage)}; "
        f"exit {int(code)} ({code.name.lower()})"
    )


def drift_line(drift: Drift) -> str:
    """Return the one-line drift summary against the previous scan."""
    c = drift_counts(drift)
    return (
        f"since scan {drift.previous_scan_id[:8]} ({drift.previous_started_at}): "
        f"{count(c['new_failures'], 'new failure')}, {c['resolved_failures']} resolved, "
        f"{count(c['changed_settings'], 'host')} changed setting, {c['newly_unreachable']} newly unreachable, "
        f"{c['reachable_again']} reachable again, {c['joined']} joined, {c['left']} left"
    )


class _SafeJournal:
    """Append to the journal; a write failure disables it (with one warning) instead of the scan."""

    def __init__(self, journal: Journal | None) -> None:
        self.journal = journal

    def append(self, observation: Observation) -> None:
        if self.journal is None:
            return
        try:
            self.journal.append(observation)
        except OSError as exc:
            log.warning(
                "cannot write the checkpoint journal %s (%s): this scan cannot be resumed",
                self.journal.path,
                exc.strerror or type(exc).__name__,
            )
            self.journal.close()
            self.journal = None

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()


@dataclass
class _History:
    """The history side of one scan: the store (None when off or unusable) and the journal."""

    store: SqliteStore | None = None
    failed: bool = False  # history was asked for but the database could not be opened
    start: ScanStart | None = None
    journal: Journal | None = None
    journal_failed: bool = False  # a journal write failed mid-scan: the scan cannot be resumed

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
        if self.store is not None:
            self.store.close()
            self.store = None


def _open_history(db: Path, inputs: ScanInputs, inventory_id: str, *, resume: bool) -> _History:
    """Open the store, decide the scan id (resume or new) and open the journal."""
    history = _History()
    try:
        history.store = open_store(db)
    except StoreError as exc:
        # The scan still runs and its report is written; only history/drift/resume are lost.
        log.error("%s: this scan will not be recorded (the report is still written)", exc)
        history.failed = True
        return history
    jpath = journal_path_for(db)
    try:
        key = history.store.journal_key()
        start = plan_start(
            jpath,
            key=key,
            inventory_id=inventory_id,
            targets=inputs.inventory.targets,
            policies=[p.name for p in inputs.policies],
            resume=resume,
            credentials=inputs.credentials,
        )
    except BaseException:
        history.close()
        raise
    for note in start.notes:
        log.log(note.level, "%s", note.message, extra=fields(**note.fields))
    history.start = start
    try:
        history.journal = Journal(jpath, start.header, key, fresh=not start.resumed)
    except (OSError, StateError) as exc:
        log.warning(
            "cannot write the checkpoint journal %s (%s): this scan cannot be resumed",
            jpath,
            (exc.strerror if isinstance(exc, OSError) else str(exc)) or type(exc).__name__,
        )
    log.debug("history: database %s, scan %s (%s)", db, start.scan_id, "resumed" if start.resumed else "new")
    return history


def _request(
    config: Config, inputs: ScanInputs, history: _History, sink: _SafeJournal, material: AuthMaterial | None
) -> ScanRequest:
    start = history.start
    options = collect_options(config)
    return ScanRequest(
        inventory=inputs.inventory,
        policies=inputs.policies,
        credentials=inputs.credentials,
        options=options,
        concurrency=config.concurrency,
        fail_on=config.fail_on,
        min_coverage=config.min_coverage,
        waivers=inputs.waivers,
        waiver_warn_days=config.waiver_warn_days,
        deadline=config.timeouts.deadline,
        grace=config.timeouts.grace,
        scan_id=start.scan_id if start is not None else None,
        started_at=start.started_at if start is not None else None,
        done=start.done if start is not None else (),
        on_observation=sink.append,
        progress=config.log_format == "plain",
        material=material,
        collector=inputs.collector,
        max_auth_failures=config.max_auth_failures,
        seed_logons=start is not None and start.resumed and start.same_credentials,
    )


def _warn_about_inputs(config: Config, inputs: ScanInputs) -> None:
    for warning in inputs.inventory.warnings:
        log.warning("%s", warning)
    if config.insecure_skip_tls_verify:
        log.warning("TLS certificate verification is OFF (--insecure-skip-tls-verify): results can be spoofed")
    if config.tls_min_version != "1.2":
        log.warning(
            "TLS %s is allowed for HTTPS hosts (--tls-min-version), with OpenSSL's weakest ciphers: for "
            "WinRM 1.1 listeners only",
            config.tls_min_version,
        )


def execute_scan(
    config: Config,
    inputs: ScanInputs,
    *,
    resume: bool = False,
    color: bool = False,
    environ: Mapping[str, str] | None = None,
) -> ScanResult:
    """Scan with history as configured, write the report, export; return the exit code and head."""
    # Raises LockedError (exit 4) when another scan holds the database, JournalError (exit 2)
    # when --resume cannot be honoured, OutputError (exit 2) when the report cannot be written.
    env = os.environ if environ is None else environ
    _warn_about_inputs(config, inputs)
    inventory_id = inventory_id_of(config, inputs.inventory)
    db = database_path(config, env) if config.history else None
    lock: ScanLock | None = None
    history = _History()
    if db is not None:
        lock = ScanLock(db)
        try:
            lock.acquire()  # LockedError (exit 4) when another scan holds it
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {lock.path}: {exc.strerror or exc}") from None
    # A sites coordinator (--broker) reads no host and has no account: its workers prove their own.
    material = AuthMaterial(inputs.credentials) if inputs.credentials is not None else None
    try:
        # Prove the credentials before any host and before the journal: with Kerberos, the scan's
        # one TGT; a refused logon is exit 2 with nothing contacted (docs/authentication.md#lockout-safety).
        if material is not None:
            with stage("login"):
                material.prove(inputs.inventory.targets, collect_options(config))
        if db is not None:
            with stage("history-open"):
                history = _open_history(db, inputs, inventory_id, resume=resume)
        sink = _SafeJournal(history.journal)
        try:
            with stage("collect-and-evaluate"):
                outcome = run_scan(_request(config, inputs, history, sink, material))
        finally:
            sink.close()
            history.journal_failed = history.journal is not None and sink.journal is None
        try:
            return _finish(config, inputs, outcome, history, inventory_id, color=color)
        finally:
            outcome.close()  # the report's hosts live in a temp file until here
    finally:
        if material is not None:
            material.close()
        history.close()
        if lock is not None:
            lock.release()


def _record(
    report: ReportHeader, outcome: ScanOutcome, history: _History, inventory_id: str, floor: float
) -> ReportHeader | None:
    """Add drift to the report and record it; None when the database refused the write."""
    store = history.store
    assert store is not None
    scan = report.scan
    try:
        # Against the newest scan that reached the coverage floor, each host against its last
        # read (docs/scheduling.md#drift-across-bad-nights); host by host from both sides, neither
        # scan held whole (docs/performance.md).
        previous = store.baseline_scan(inventory_id, current=scan.id, started_at=scan.started_at, min_coverage=floor)
        if previous is not None:
            drift = drift_between(
                previous.id,
                previous.started_at,
                store.baseline_hosts(previous, current=scan.id, started_at=scan.started_at),
                by_identity(outcome.hosts),
            )
            report = report.model_copy(update={"drift": drift})
        store.record_scan(report, outcome.hosts, inventory_id=inventory_id)
    except StoreError as exc:
        log.error("%s: the scan is not recorded (the report is still written)", exc)
        return None
    if history.journal is not None and not report.scan.interrupted and outcome.breaker is None:
        history.journal.remove()  # recorded: nothing left to resume
        history.journal = None
    return report


def _mark_breaker(history: _History, message: str) -> None:
    """Leave the breaker's outcome in the journal so `--resume` will not spend these credentials again."""
    if history.journal is None or history.start is None:
        return  # no history, or no journal could be written: only this run was protected
    try:
        history.journal.mark_breaker(BreakerStop(message, now_rfc3339()), history.start.credential)
    except OSError as exc:
        log.warning(
            "cannot mark the checkpoint journal %s (%s): the next --resume will try these credentials again",
            history.journal.path,
            exc.strerror or type(exc).__name__,
        )
    history.journal = None  # closed; kept on disk for the next run's decision


def _export(report: ReportHeader, hosts: Hosts, destinations: list[Destination]) -> ExitCode:
    """Spool the findings, then deliver them; what is not delivered stays spooled for `ship`."""
    try:
        summary = export_report(report, hosts, destinations, default_spool_dir())
    except SpoolError as exc:
        # The scan and its report stand; only the delivery failed: exit 5, not 2 (README).
        log.error("%s: nothing was exported", exc)
        return ExitCode.UNDELIVERED
    for line in summary.lines():
        log.info("%s", line)
    return ExitCode.OK if summary.complete else ExitCode.UNDELIVERED


def _say_how_to_continue(history: _History) -> None:
    """Tell the user how to finish an interrupted scan (README "History, drift and unattended runs")."""
    if history.journal is not None and not history.journal_failed:
        log.info("run `natt-audit scan --resume` with the same options to finish this scan")
    else:
        # No journal (--no-history, or it could not be written): nothing to resume from.
        log.info("this scan kept no checkpoint journal to resume from: run it again to finish it")


def _finish(
    config: Config,
    inputs: ScanInputs,
    outcome: ScanOutcome,
    history: _History,
    inventory_id: str,
    *,
    color: bool,
) -> ScanResult:
    """Record the scan in history (with drift), write the report, export, and log the summary."""
    report = outcome.header
    code = outcome.code
    # The account is the scan's own; with --broker each site's worker holds its own (docs/sites.md).
    account = inputs.credentials.username if inputs.credentials is not None else "the site accounts"
    if outcome.breaker is not None and inputs.credentials is None:
        # The breakers ran on the sites' workers, each with its own account and limit.
        log.error(
            "%s: every other host of that site is error auth/not_attempted; fix the password its workers "
            "use before the next run",
            outcome.breaker,
            extra=fields(auth_rejected=report.summary.auth_rejected),
        )
    elif outcome.breaker is not None:
        log.error(
            "%s (--max-auth-failures %d): every other host is error auth/not_attempted; fix the password "
            "of %s before the next run",
            outcome.breaker,
            config.max_auth_failures,
            account,
            extra=fields(auth_rejected=report.summary.auth_rejected, max_auth_failures=config.max_auth_failures),
        )
    elif report.summary.auth_rejected:
        log.warning(
            "%d host(s) rejected the logon of %s although others accepted it: the account lacks rights "
            "there (hosts with error auth/unauthorized)",
            report.summary.auth_rejected,
            account,
            extra=fields(auth_rejected=report.summary.auth_rejected),
        )
    if outcome.deadline_reached:
        log.warning(
            "the scan deadline (%s) passed: hosts not reached are reported as error timeout/deadline",
            format_duration(config.timeouts.deadline or 0.0),
        )
    if report.waivers is not None:
        for entry in report.waivers.unmatched:
            log.warning("waiver %s (%s) matches no host or no loaded rule", entry.label, entry.source)
        for entry in report.waivers.expiring:
            log.warning("waiver %s expires on %s (%s)", entry.label, entry.expires, entry.source)
        for entry in report.waivers.expired:
            log.warning(
                "waiver %s expired on %s (%s): it waives nothing any more",
                entry.label,
                entry.expires,
                entry.source,
            )
    if outcome.breaker is not None:
        _mark_breaker(history, outcome.breaker)
    recorded = False
    if history.store is not None:
        with stage("history-record"):
            with_drift = _record(report, outcome, history, inventory_id, config.baseline_min_coverage)
        if with_drift is None:
            code = combine(code, ExitCode.USAGE)
        else:
            report, recorded = with_drift, True
    if history.failed:
        code = combine(code, ExitCode.USAGE)
    with stage("report"):
        try:
            write_report(report, outcome.hosts, Format(config.format), config.output, color=color)
        except OSError as exc:
            raise OutputError(f"cannot write the report to {config.output}: {exc.strerror or exc}") from None
    if inputs.destinations:
        with stage("export"):
            code = combine(code, _export(report, outcome.hosts, inputs.destinations))
    log.info(
        "%s",
        summary_line(report, code),
        extra=fields(
            scan_id=report.scan.id,
            hosts=report.summary.hosts_total,
            coverage=report.summary.coverage,
            by_status=dict(report.summary.hosts_by_status),
            interrupted=report.scan.interrupted,
            exit_code=int(code),
        ),
    )
    if report.drift is not None:
        log.info(
            "%s",
            drift_line(report.drift),
            extra=fields(previous_scan_id=report.drift.previous_scan_id, **drift_counts(report.drift)),
        )
    if report.scan.interrupted:
        _say_how_to_continue(history)
    return ScanResult(code=code, scan=report.scan, summary=report.summary, drift=report.drift, recorded=recorded)
