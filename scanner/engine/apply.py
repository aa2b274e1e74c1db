"""`remediate --apply`: a reviewed plan applied host by host, verified by a rescan, recorded.

The steps (docs/remediation.md#applying):

1. each planned host's changes go to `scanner.collect.remediate.apply_host`, fanned out by the
   scan's own pool (`scanner.engine.pool.collect_all`, with the apply as the per-host work), so
   the pool's credential rules hold for an apply exactly as for a scan;
2. unless told not to, the hosts that were reached are scanned again (`run_scan`, the scan's own
   path) with the report's policies, and each host's verdict says whether the failures its plan
   fixes now pass;
3. the whole run (every step's before, after and result; every verdict) is recorded in the
   history database and, when asked, written to a JSON log.

A SIGINT or SIGTERM starts no further host; hosts in flight finish their steps (each within its
own deadline), so no host is left between a stop and a start without a record.
"""

from __future__ import annotations

import logging
import signal
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from reports.model import HostReport
from reports.remediation.plan import DeleteValue, HostPlan, RemediationPlan, RestartService, SetValue
from rules.loader import Policy
from scanner import __version__
from scanner.collect.remediate import SERVICE, ActionKind, ActionResult, Change, HostApply, Outcome, apply_host
from scanner.collect.wsman.auth import AuthMaterial
from scanner.core.exitcodes import ExitCode, combine
from scanner.core.models import CollectOptions, Credentials, HostError, Observation, RegistryValue, Stage, Target
from scanner.core.results import Status
from scanner.engine.pool import collect_all
from scanner.engine.run import ScanRequest, now_rfc3339, run_scan
from scanner.history.applylog import ApplyRun, HostRecord, Verdict, write_log
from scanner.history.lock import ScanLock
from scanner.history.store import StoreError, open_store
from scanner.inputs.inventory import Inventory

log = logging.getLogger("natt_audit.engine")

VERDICT_CODES = {Verdict.PASS: ExitCode.OK, Verdict.FAIL: ExitCode.FINDINGS, Verdict.UNVERIFIED: ExitCode.INCOMPLETE}


@dataclass(frozen=True)
class Planned:
    """One host to change: its plan and where to reach it."""

    plan: HostPlan
    target: Target


@dataclass(frozen=True)
class ApplyRequest:
    """Everything one apply needs, loaded, validated and confirmed."""

    plan: RemediationPlan
    hosts: Sequence[Planned]
    report: str  # the report's path, as given
    policies: Sequence[Policy]  # for the verification scan
    credentials: Credentials
    options: CollectOptions
    concurrency: int
    verify: bool = True


def _observed(value: object) -> RegistryValue | None:
    """Return a plan's before (an Observed) as the registry value the applier compares with."""
    if value is None:
        return None
    return RegistryValue.model_validate(value, from_attributes=True)


def changes_of(plan: HostPlan) -> tuple[Change, ...]:
    """Return the applier's steps for one host's plan, in the plan's order."""
    changes: list[Change] = []
    for action in plan.actions:
        if isinstance(action, SetValue):
            changes.append(
                Change(
                    action=ActionKind.SET_VALUE,
                    key=action.key.value,
                    before=_observed(action.before),
                    data=action.after.data,
                )
            )
        elif isinstance(action, DeleteValue):
            changes.append(
                Change(action=ActionKind.DELETE_VALUE, key=action.key.value, before=_observed(action.before))
            )
        elif isinstance(action, RestartService):
            changes.append(Change(action=ActionKind.RESTART_SERVICE, service=action.service))
    return tuple(changes)


@contextmanager
def _finish_in_flight(stop: threading.Event) -> Iterator[None]:
    """On SIGINT/SIGTERM start no further host; the ones in flight finish (never cut mid-change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            log.warning("stopping: no further host is started; hosts in flight finish their steps")
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _not_started(target: Target, changes: tuple[Change, ...], observation: Observation | None) -> HostApply:
    """Return the record of a host the run never started (stopped, or kept from by the pool)."""
    if observation is not None and observation.error is not None:
        reason = f"{observation.error.stage.value}/{observation.error.reason}"
        message = f"not started: {observation.error.message}"
    else:
        reason, message = "not_started", "not started: the run was stopped first"
        error = HostError(stage=Stage.TIMEOUT, reason="interrupted", message="apply stopped before this host")
        observation = Observation(target=target, error=error)
    results = tuple(
        ActionResult(
            action=c.action,
            what=c.what,
            before=None,
            after=None,
            result=Outcome.SKIPPED,
            reason=reason,
            message=message,
        )
        for c in changes
    )
    return HostApply(observation=observation, actions=results)


def apply_all(
    hosts: Sequence[Planned], credentials: Credentials, options: CollectOptions, *, concurrency: int
) -> dict[str, HostApply]:
    """Apply every host's plan through the scan's pool; return each host's record by name."""
    steps = {h.target.name: changes_of(h.plan) for h in hosts}
    applied: dict[str, HostApply] = {}
    seen: dict[str, Observation] = {}
    lock = threading.Lock()

    def work(target: Target, material: AuthMaterial, opts: CollectOptions) -> Observation:
        done = apply_host(target, material, opts, steps[target.name])
        with lock:
            applied[target.name] = done
        return done.observation

    def finished(observation: Observation) -> None:
        seen[observation.target.name] = observation
        done = applied.get(observation.target.name)
        if done is not None:
            counts = ", ".join(f"{a.action.value} {a.result.value}" for a in done.actions)
            log.info("%s: %s", observation.target.name, counts)

    stop = threading.Event()
    with _finish_in_flight(stop):
        collect_all(
            [h.target for h in hosts],
            credentials,
            options,
            concurrency=concurrency,
            on_result=finished,
            stop=stop,
            keep=False,
            work=work,
        )
    for host in hosts:
        name = host.target.name
        if name not in applied:
            applied[name] = _not_started(host.target, steps[name], seen.get(name))
    return applied


def verify_all(
    hosts: Sequence[Target],
    policies: Sequence[Policy],
    credentials: Credentials,
    options: CollectOptions,
    *,
    concurrency: int,
    source: str,
) -> dict[str, HostReport]:
    """Scan `hosts` again with `policies` (the scan's own path); return each host's report entry by name."""
    if not hosts:
        return {}
    inventory = Inventory(path=f"verification of {source}", targets=tuple(hosts))
    request = ScanRequest(
        inventory=inventory,
        policies=policies,
        credentials=credentials,
        options=options,
        concurrency=concurrency,
        min_coverage=0.0,
        progress=False,
    )
    outcome = run_scan(request)
    try:
        return {host.name: host for host in outcome.hosts}
    finally:
        outcome.close()


def _first_problem(actions: Sequence[ActionResult]) -> ActionResult | None:
    return next((a for a in actions if a.result in (Outcome.FAILED, Outcome.SKIPPED)), None)


def verdict_of(plan: HostPlan, done: HostApply, rescan: HostReport | None, *, verified: bool) -> tuple[Verdict, str]:
    """Return where a planned host stands, and why (docs/remediation.md#exit-status)."""
    error = done.observation.error
    if error is not None:
        return Verdict.UNVERIFIED, f"not changed: {error.stage.value}/{error.reason}: {error.message}"
    problem = _first_problem(done.actions)
    wrote = any(a.action is ActionKind.SET_VALUE and a.result is Outcome.DONE for a in done.actions)
    restarted = any(
        a.action is ActionKind.RESTART_SERVICE and a.result in (Outcome.DONE, Outcome.UNCHANGED) for a in done.actions
    )
    if wrote and plan.restart and not restarted and problem is not None:
        # KB 885407: the Policy Agent reads the value when it starts. Written but not restarted,
        # the host still behaves by the old value, whatever a rescan of the registry says.
        return Verdict.UNVERIFIED, (
            f"the value was written but {SERVICE} was not restarted ({problem.action.value} {problem.result.value}: "
            f"{problem.reason}): the new value is not in force"
        )
    applied = "applied" if problem is None else f"{problem.action.value} {problem.result.value} ({problem.reason})"
    if not verified:
        if problem is None:
            return Verdict.PASS, "applied; not verified (--no-verify)"
        return Verdict.FAIL, f"{applied}; not verified (--no-verify)"
    if rescan is None:
        return Verdict.UNVERIFIED, f"{applied}; not rescanned"
    if rescan.error is not None:
        return (
            Verdict.UNVERIFIED,
            f"{applied}; the verification scan could not read it: {rescan.error.stage.value}/{rescan.error.reason}",
        )
    statuses = {r.rule_id: r.status for r in rescan.results}
    failing = [rule for rule in plan.rules if statuses.get(rule) is Status.FAIL]
    if failing:
        return Verdict.FAIL, f"{applied}; still failing: {', '.join(failing)}"
    unknown = [rule for rule in plan.rules if statuses.get(rule) in (None, Status.ERROR)]
    if unknown:
        return Verdict.UNVERIFIED, f"{applied}; not evaluated in the verification scan: {', '.join(unknown)}"
    return Verdict.PASS, f"{applied}; now passing: {', '.join(plan.rules)}"


def exit_code_of(records: Sequence[HostRecord]) -> ExitCode:
    """Return 0 when every planned host passes, 1 when one still fails, 3 when one could not be verified."""
    return combine(*(VERDICT_CODES[r.verdict] for r in records))


def execute_apply(request: ApplyRequest, *, started_at: str | None = None) -> ApplyRun:
    """Apply, verify and judge every planned host; return the run's record (not yet stored)."""
    started = started_at or now_rfc3339()
    applied = apply_all(request.hosts, request.credentials, request.options, concurrency=request.concurrency)
    rescans: Mapping[str, HostReport] = {}
    if request.verify:
        reached = [h.target for h in request.hosts if applied[h.target.name].observation.error is None]
        log.info("verification: scanning the %d hosts that were reached again", len(reached))
        rescans = verify_all(
            reached,
            request.policies,
            request.credentials,
            request.options,
            concurrency=request.concurrency,
            source=request.report,
        )
    records = []
    for host in request.hosts:
        done = applied[host.target.name]
        verdict, detail = verdict_of(host.plan, done, rescans.get(host.target.name), verified=request.verify)
        records.append(
            HostRecord(
                name=host.plan.name,
                address=host.target.address,
                port=host.target.port,
                rules=list(host.plan.rules),
                actions=list(done.actions),
                verdict=verdict,
                detail=detail,
            )
        )
    source = request.plan.source
    return ApplyRun(
        id=str(uuid.uuid4()),
        tool_version=__version__,
        report=request.report,
        report_scan_id=source.scan_id,
        report_finished_at=source.finished_at,
        started_at=started,
        finished_at=now_rfc3339(),
        verified=request.verify,
        exit_code=int(exit_code_of(records)),
        hosts=records,
        left_out=list(request.plan.skipped),
    )


def log_path_problem(path: str) -> str | None:
    """Return why the JSON log cannot be written at `path`, checked before any change; None when it can."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        return f"{path} is a folder"
    if not folder.is_dir():
        return f"the folder of {path} does not exist"
    return None


@dataclass(frozen=True)
class ApplyOutcome:
    """A finished apply: its record and the exit code (the verdicts', or 2 when the record was lost)."""

    run: ApplyRun
    code: ExitCode
    recorded: bool


def _record(run: ApplyRun, db: Path) -> bool:
    try:
        with open_store(db) as store:
            store.record_apply(run)
    except StoreError as exc:
        log.error("%s: this apply is not in the history (its outcome is above and in --log)", exc)
        return False
    return True


def run_apply(request: ApplyRequest, *, db: Path | None, log_file: str | None) -> ApplyOutcome:
    """Apply under the history database's lock, then record the run there and in the JSON log.

    Raises LockedError (exit 4) before any change when a scan or another apply holds the lock. A
    record that cannot be written (database, log) is an error on stderr and exit 2: the changes
    made stand, and what they were is printed all the same.
    """
    lock: ScanLock | None = None
    if db is not None:
        lock = ScanLock(db)
        try:
            lock.acquire()
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {lock.path}: {exc.strerror or exc}") from None
    try:
        run = execute_apply(request)
        code = ExitCode(run.exit_code)
        recorded = db is not None and _record(run, db)
        if db is not None and not recorded:
            code = combine(code, ExitCode.USAGE)
    finally:
        if lock is not None:
            lock.release()
    if log_file is not None:
        try:
            write_log(log_file, run)
        except OSError as exc:
            log.error("cannot write the action log %s: %s", log_file, exc.strerror or exc)
            code = combine(code, ExitCode.USAGE)
    return ApplyOutcome(run=run, code=code, recorded=recorded)
