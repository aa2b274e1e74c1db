"""`natt-audit scan`: load and validate every input before the first packet, then scan.

With history on (the default): take the database's lock (exit 4 when another scan holds it),
journal every finished host (scanner/history/journal.py) so `--resume` can continue an interrupted run,
compute drift against the previous complete scan of the same inventory, record the scan in one
transaction, and only then drop the journal.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reports.export.destinations import Destination, DestinationError, Kind, load_token, parse_destination
from reports.export.ship import export_report
from reports.export.spool import SpoolError, default_spool_dir
from reports.model import ScanReport
from rules.loader import Policy, PolicyError, resolve_policies
from rules.waivers import WaiverSet, load_waivers
from scanner.core.exitcodes import ExitCode, combine
from scanner.core.formats import Format
from scanner.core.logsetup import say, setup_logging
from scanner.core.models import CollectOptions, Credentials, Observation
from scanner.core.results import host_identity
from scanner.core.yamlfile import FileError
from scanner.engine.run import ScanOutcome, ScanRequest, now_rfc3339, run_scan, write_report
from scanner.history.drift import by_identity, drift_between, drift_counts
from scanner.history.journal import (
    Journal,
    JournalError,
    JournalHeader,
    journal_path_for,
    read_journal,
    targets_digest,
)
from scanner.history.lock import LockedError, ScanLock
from scanner.history.store import SqliteStore, StoreError, open_store
from scanner.inputs.config import Config, ConfigError, database_path, format_duration, load_config
from scanner.inputs.credentials import ENV_PASSWORD, ENV_USERNAME, CredentialError, load_credentials
from scanner.inputs.inventory import Inventory, InventoryError, load_inventory

log = logging.getLogger("natt_audit")


def summary_line(report: ScanReport, code: ExitCode) -> str:
    """Return the one-line summary printed on stderr after every scan."""
    s = report.summary
    by = s.hosts_by_status
    parts = ", ".join(f"{by.get(k, 0)} {k}" for k in ("pass", "fail", "waived", "error", "not_applicable"))
    flag = " (interrupted)" if report.scan.interrupted else ""
    return (
        f"natt-audit: scanned {s.hosts_total} hosts{flag}: {parts}; coverage {s.coverage:.1%}; "
        f"exit {int(code)} ({code.name.lower()})"
    )


def drift_line(report: ScanReport) -> str | None:
    """Return the one-line drift summary, or None when there is no previous scan to compare."""
    drift = report.drift
    if drift is None:
        return None
    c = drift_counts(drift)
    return (
        f"natt-audit: since scan {drift.previous_scan_id[:8]} ({drift.previous_started_at}): "
        f"{c['new_failures']} new failures, {c['resolved_failures']} resolved, "
        f"{c['changed_settings']} hosts changed setting, {c['newly_unreachable']} newly unreachable, "
        f"{c['reachable_again']} reachable again, {c['joined']} joined, {c['left']} left"
    )


def inventory_id_of(config: Config, inventory: Inventory) -> str:
    """Return the inventory's identity for drift and resume: the configured id, else its real path."""
    if config.inventory_id:
        return config.inventory_id
    return "path:" + str(Path(inventory.path).resolve())


def _error(message: str, code: ExitCode = ExitCode.USAGE) -> int:
    say(f"natt-audit: error: {message}", level=logging.ERROR)
    return code


def _load_waivers(paths: list[str]) -> WaiverSet | None:
    """Load every waivers file into one set (the report names them all)."""
    if not paths:
        return None
    sets = [load_waivers(path) for path in paths]
    if len(sets) == 1:
        return sets[0]
    return WaiverSet(path=", ".join(w.path for w in sets), waivers=tuple(c for w in sets for c in w.waivers))


def _credentials(config: Config, environ: Mapping[str, str]) -> Credentials:
    env = dict(environ)
    # The config may name other variables for the account; load_credentials reads the standard ones.
    for standard, chosen in (
        (ENV_USERNAME, config.credentials.username_env),
        (ENV_PASSWORD, config.credentials.password_env),
    ):
        if chosen != standard:
            env.pop(standard, None)
            if chosen in environ:
                env[standard] = environ[chosen]
    return load_credentials(
        password_file=config.credentials.password_file,
        environ=env,
        stdin_isatty=sys.stdin.isatty(),
        username=config.credentials.username,
    )


@dataclass(frozen=True)
class _Inputs:
    inventory: Inventory
    policies: list[Policy]
    waivers: WaiverSet | None
    credentials: Credentials
    destinations: list[Destination]


def _load_inputs(config: Config) -> _Inputs:
    if config.inventory is None:
        raise ConfigError("no inventory: give -i/--inventory, `inventory` in the config file, or NATT_AUDIT_INVENTORY")
    policies = resolve_policies(config.policies)
    waivers = _load_waivers(config.waivers)
    inventory = load_inventory(config.inventory)
    credentials = _credentials(config, os.environ)
    destinations = [parse_destination(text) for text in config.exports]
    for destination in destinations:
        if destination.is_network and destination.kind is Kind.HEC:
            load_token(destination, os.environ)  # refuse a missing token now, not after the scan
    return _Inputs(inventory, policies, waivers, credentials, destinations)


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


def _export(report: ScanReport, destinations: list[Destination]) -> ExitCode:
    """Spool the findings, then deliver them; what is not delivered stays spooled for `ship`."""
    try:
        summary = export_report(report, destinations, default_spool_dir())
    except SpoolError as exc:
        log.error("%s: nothing was exported", exc)
        return ExitCode.UNDELIVERED
    for line in summary.lines():
        say(line)
    return ExitCode.OK if summary.complete else ExitCode.UNDELIVERED


def run_scan_command(args: argparse.Namespace) -> int:
    """Validate inputs (exit 2 on any problem), scan, write the report, return the exit code."""
    try:
        loaded = load_config(path=getattr(args, "config", None), environ=os.environ, args=args)
    except ConfigError as exc:
        return _error(str(exc))
    config = loaded.config
    setup_logging(verbose=bool(getattr(args, "verbose", False)), fmt=config.log_format)
    if config.inventory is None:
        return _error("no inventory: give -i/--inventory, `inventory` in the config file, or NATT_AUDIT_INVENTORY")
    lock: ScanLock | None = None
    if config.history:
        lock = ScanLock(database_path(config))
        try:
            lock.acquire()
        except LockedError as exc:
            return _error(str(exc), ExitCode.LOCKED)
        except OSError as exc:
            return _error(f"cannot create the lock file {lock.path}: {exc.strerror or exc}")
    try:
        return _scan(args, config)
    finally:
        if lock is not None:
            lock.release()


def _scan(args: argparse.Namespace, config: Config) -> int:
    try:
        inputs = _load_inputs(config)
    except (ConfigError, FileError, PolicyError, InventoryError, CredentialError, DestinationError) as exc:
        return _error(str(exc))
    inventory = inputs.inventory
    for warning in inventory.warnings:
        log.warning("%s", warning)
    if config.insecure_skip_tls_verify:
        log.warning("TLS certificate verification is OFF (--insecure-skip-tls-verify): results can be spoofed")
    if config.tls_min_version != "1.2":
        log.warning(
            "TLS %s is allowed for HTTPS hosts (--tls-min-version), with OpenSSL's weakest ciphers: for "
            "WinRM 1.1 listeners only",
            config.tls_min_version,
        )
    inventory_id = inventory_id_of(config, inventory)
    policy_names = tuple(p.name for p in inputs.policies)
    store = None
    journal: Journal | None = None
    scan_id: str | None = None
    started_at: str | None = None
    done: tuple[Observation, ...] = ()
    history_failed = False
    if config.history:
        db = database_path(config)
        try:
            store = open_store(db)
        except StoreError as exc:
            # The scan still runs and its report is written; only history/drift/resume are lost.
            log.error("%s: this scan will not be recorded (the report is still written)", exc)
            history_failed = True
    if store is not None:
        jpath = journal_path_for(db)
        digest = targets_digest(inventory.targets)
        try:
            state = read_journal(jpath)
        except JournalError as exc:
            if getattr(args, "resume", False):
                store.close()
                return _error(f"{exc}; run without --resume to start a new scan")
            log.warning("%s; starting a new scan", exc)
            state = None
        if state is not None and getattr(args, "resume", False):
            head = state.header
            if head.inventory_id != inventory_id or head.targets_digest != digest:
                store.close()
                return _error(
                    f"cannot resume scan {head.scan_id}: it was a scan of another inventory or the "
                    f"inventory changed since ({head.inventory_id}); run without --resume to start over"
                )
            if head.policies != policy_names:
                store.close()
                return _error(
                    f"cannot resume scan {head.scan_id}: it ran with policies {list(head.policies)}, "
                    f"not {list(policy_names)}; run without --resume to start over"
                )
            scan_id, started_at, done = head.scan_id, head.started_at, state.observations
            say(
                f"natt-audit: resuming scan {scan_id} (started {started_at}): "
                f"{len(done)} of {len(inventory.targets)} hosts already done",
                scan_id=scan_id,
                done=len(done),
            )
        elif state is not None:
            log.warning(
                "discarding the checkpoint of interrupted scan %s (use --resume to continue it)",
                state.header.scan_id,
            )
        elif getattr(args, "resume", False):
            say("natt-audit: nothing to resume in this database; starting a new scan")
        if scan_id is None:
            scan_id, started_at = str(uuid.uuid4()), now_rfc3339()
        assert started_at is not None
        header = JournalHeader(scan_id, started_at, inventory_id, digest, policy_names)
        try:
            journal = Journal(jpath, header, fresh=not done)
        except OSError as exc:
            log.warning(
                "cannot write the checkpoint journal %s (%s): this scan cannot be resumed",
                jpath,
                exc.strerror or type(exc).__name__,
            )
    sink = _SafeJournal(journal)
    options = CollectOptions(
        host_timeout=config.timeouts.host,
        connect_timeout=min(config.timeouts.connect, config.timeouts.host),
        ca_bundle=config.ca_bundle,
        verify_tls=not config.insecure_skip_tls_verify,
        tls_min_version=config.tls_min_version,
        legacy_port_fallback=config.legacy_port_fallback,
    )
    request = ScanRequest(
        inventory=inventory,
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
        scan_id=scan_id,
        started_at=started_at,
        done=done,
        on_observation=sink.append,
        progress=config.log_format == "plain",
    )
    try:
        outcome = run_scan(request)
    finally:
        if sink.journal is not None:
            sink.journal.close()
    try:
        return _finish(config, inputs, outcome, store, journal, inventory_id, history_failed)
    finally:
        outcome.close()  # the report's hosts live in a temp file until here


def _finish(
    config: Config,
    inputs: _Inputs,
    outcome: ScanOutcome,
    store: SqliteStore | None,
    journal: Journal | None,
    inventory_id: str,
    history_failed: bool,
) -> int:
    """Record the scan in history (with drift), write the report, export, and say the summary."""
    report = outcome.report
    code = outcome.code
    if outcome.deadline_reached:
        deadline = config.timeouts.deadline or 0.0
        log.warning(
            "the scan deadline (%s) passed: hosts not reached are reported as error timeout/deadline",
            format_duration(deadline),
        )
    if report.waivers is not None:
        for entry in report.waivers.unmatched:
            log.warning("waiver %s (%s) matches no host or no loaded rule", entry.label, entry.source)
        for entry in report.waivers.expiring:
            log.warning("waiver %s expires on %s (%s)", entry.label, entry.expires, entry.source)
    if store is not None:
        try:
            # Host by host from both sides: neither scan is held whole (docs/performance.md).
            previous = store.previous_scan(inventory_id, before=report.scan.id)
            if previous is not None:
                drift = drift_between(
                    previous.id,
                    previous.started_at,
                    store.host_reports(previous.id, host_identity),
                    by_identity(report.hosts),
                )
                report = report.model_copy(update={"drift": drift})
            store.record_scan(report, inventory_id=inventory_id, observations=outcome.observations)
        except StoreError as exc:
            log.error("%s: the scan is not recorded (the report is still written)", exc)
            code = combine(code, ExitCode.USAGE)
        else:
            if journal is not None and not report.scan.interrupted:
                journal.remove()  # recorded: nothing left to resume
        finally:
            store.close()
    color = config.color == "always" or (
        config.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    )
    try:
        write_report(report, Format(config.format), config.output, color=color)
    except OSError as exc:
        return _error(f"cannot write the report to {config.output}: {exc.strerror or exc}")
    if history_failed:
        code = combine(code, ExitCode.USAGE)
    if inputs.destinations:
        code = combine(code, _export(report, inputs.destinations))
    say(
        summary_line(report, code),
        scan_id=report.scan.id,
        hosts=report.summary.hosts_total,
        coverage=report.summary.coverage,
        by_status=dict(report.summary.hosts_by_status),
        interrupted=report.scan.interrupted,
        exit_code=int(code),
    )
    line = drift_line(report)
    if line is not None and report.drift is not None:
        say(line, previous_scan_id=report.drift.previous_scan_id, **drift_counts(report.drift))
    return code
