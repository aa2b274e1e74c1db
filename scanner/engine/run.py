"""Run one scan: inventory -> collect -> evaluate -> report. The CLI and the demo both call this."""

from __future__ import annotations

import io
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import FrameType

from reports.build import ReportAssembly
from reports.formats import render
from reports.hosts import Hosts
from reports.hostspill import HostSpill
from reports.model import InventorySource, PolicyRef, ReportHeader, ScanInfo, WaiverEntry, WaiversSection
from reports.progress import Progress
from rules.compile import ruleset
from rules.evaluate import evaluate
from rules.loader import Policy
from rules.waivers import EXPIRY_WARNING_DAYS, WaiverRef, WaiverSet, apply_waivers, summarize
from scanner import __version__
from scanner.collect.wsman.auth import AuthMaterial
from scanner.core.atomic import atomic_text
from scanner.core.exitcodes import ExitCode, combine
from scanner.core.formats import Format
from scanner.core.logsetup import fields
from scanner.core.models import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_AUTH_FAILURES,
    CollectOptions,
    Credentials,
    HostError,
    Observation,
    Stage,
    Target,
)
from scanner.core.results import Severity
from scanner.core.semantics import assess
from scanner.core.wording import count
from scanner.engine.collector import Collector, LocalCollector
from scanner.engine.logon import NOT_ATTEMPTED, LogonPolicy
from scanner.inputs.inventory import Inventory

log = logging.getLogger("natt_audit.engine")


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Log how long one stage of the run took (debug only; nothing is measured otherwise)."""
    if not log.isEnabledFor(logging.DEBUG):
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - started
        log.debug("stage %s: %.3f s", name, seconds, extra=fields(stage=name, seconds=round(seconds, 6)))


@dataclass(frozen=True)
class ScanRequest:
    """Everything one scan needs, already loaded and validated."""

    inventory: Inventory
    policies: Sequence[Policy]
    credentials: Credentials | None  # None only with a `collector` that holds its own (the sites engine)
    options: CollectOptions = field(default_factory=CollectOptions)
    concurrency: int = DEFAULT_CONCURRENCY
    fail_on: Severity = Severity.LOW
    min_coverage: float = 1.0
    waivers: WaiverSet | None = None
    waiver_warn_days: int = EXPIRY_WARNING_DAYS
    # Whole-run limit in seconds: hosts not reached by then get error timeout/deadline.
    deadline: float | None = None
    # After SIGINT/SIGTERM or the deadline: how long in-flight hosts may still finish.
    grace: float = 10.0
    # Resume (scanner/history/journal.py): keep the interrupted scan's id and start, skip finished hosts.
    scan_id: str | None = None
    started_at: str | None = None
    done: Sequence[Observation] = ()
    # Called once per newly finished host (serialised), e.g. to append it to the journal.
    on_observation: Callable[[Observation], None] | None = None
    progress: bool = True
    # Credentials already proven (the scan's Kerberos ticket), so collection logs on no second time.
    material: AuthMaterial | None = None
    # What reads the hosts; None: the local thread pool with `credentials` (scanner/engine/collector.py).
    collector: Collector | None = None
    # The lockout breaker (scanner/engine/logon.py): rejections, with no accepted logon, that stop the scan.
    max_auth_failures: int = DEFAULT_MAX_AUTH_FAILURES
    # The resumed hosts' logons were made with these very credentials: count them toward the breaker.
    seed_logons: bool = False


@dataclass(frozen=True)
class ScanOutcome:
    """The report (header and hosts) and the exit code it implies."""

    header: ReportHeader
    # Read from the scan's temp file (reports/hostspill.py), each with its raw observation
    # (`hosts.with_observations()`): nothing per host is kept in memory.
    hosts: Hosts
    code: ExitCode
    deadline_reached: bool = False
    spill: HostSpill | None = None
    # Set when the lockout breaker stopped the scan: why (the message its unattempted hosts carry).
    breaker: str | None = None

    def close(self) -> None:
        """Delete the temp file the report's hosts are read from; the hosts are unusable after."""
        if self.spill is not None:
            self.spill.close()


# Facts only Win32_OperatingSystem gives (the NTLM CHALLENGE and the inventory give version and build):
# when a policy reads one, every host is read over WQL (docs/wire.md, OS facts).
WMI_ONLY_FACTS = frozenset({"os.service_pack"})


def collect_options(request: ScanRequest) -> CollectOptions:
    """Return the request's collect options, with the WQL OS read forced when a policy needs it."""
    names = {name for c in ruleset(request.policies).rules for name in (*c.reads, *(term for term, _ in c.scope))}
    if names & WMI_ONLY_FACTS:
        return request.options.model_copy(update={"read_os_always": True})
    return request.options


def now_rfc3339() -> str:
    """Return the current UTC time as RFC 3339 with a Z, to the second."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def _stop_on_signals(stop: threading.Event, hurry: threading.Event) -> Iterator[None]:
    """Set `stop` on SIGINT/SIGTERM so no new host is dispatched; a second signal sets `hurry`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            hurry.set()  # a second signal: do not wait out the grace period
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _Collector:
    """Run collect_all in a thread so the caller can stop waiting after the grace period."""

    def __init__(
        self,
        request: ScanRequest,
        targets: Sequence[Target],
        progress: Progress,
        sink: Callable[[Observation], None],
        logon: LogonPolicy,
    ) -> None:
        self.request = request
        self.logon = logon
        self.targets = targets
        self.progress = progress
        self.sink = sink  # evaluates and spills one host: no observation is kept here
        self.stop = threading.Event()
        self.hurry = threading.Event()
        self.deadline_reached = threading.Event()
        self.finished: set[str] = set()
        # Sites whose workers' breaker stopped them (site -> the message their hosts carry): a
        # distributed engine's breakers run on the workers, not in `logon` (docs/sites.md#reliability).
        self.stopped_sites: dict[str, str] = {}
        self.closed = False
        self.lock = threading.Lock()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="natt-collect-main", daemon=True)

    def _on_result(self, observation: Observation) -> None:
        with self.lock:
            if self.closed:
                return  # finished after the grace period: the report already counts it as unreached
            self.finished.add(observation.target.name)
            error = observation.error
            if error is not None and error.stage is Stage.AUTH and error.reason == NOT_ATTEMPTED:
                self.stopped_sites.setdefault(observation.target.site, error.message)
            if self.request.on_observation is not None:
                self.request.on_observation(observation)
            self.sink(observation)
        self.progress.advance(observation)

    def _engine(self) -> Collector:
        if self.request.collector is not None:
            return self.request.collector
        if self.request.credentials is None:
            raise ValueError("a local scan needs credentials")  # a caller bug: load_inputs always loads them
        return LocalCollector(
            self.request.credentials,
            collect_options(self.request),
            self.request.concurrency,
            material=self.request.material,
            logon=self.logon,
        )

    def _run(self) -> None:
        try:
            self._engine().collect(self.targets, on_result=self._on_result, stop=self.stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread in wait()
            self.failure = exc

    def _on_deadline(self) -> None:
        if not self.stop.is_set():
            self.deadline_reached.set()
            self.stop.set()

    def in_flight(self) -> int:
        """Return how many hosts are being read now: every worker is busy while hosts remain."""
        with self.lock:
            remaining = len(self.targets) - len(self.finished)
        return max(0, min(self.request.concurrency, remaining))

    def _say_stopping(self) -> None:
        # Logged from the waiting thread, not the signal handler: a handler that logs can
        # deadlock on the logging lock the interrupted code holds (docs/reliability.md#interruption).
        if self.deadline_reached.is_set():
            return  # the deadline has its own warning (scanner/engine/scan.py)
        log.info(
            "stopping: waiting up to %s s for %s in flight; Ctrl-C again to stop now",
            f"{self.request.grace:g}",
            count(self.in_flight(), "host"),
        )

    def wait(self) -> set[str]:
        """Collect until done, or until the grace period after a stop ends; return who finished."""
        timer: threading.Timer | None = None
        if self.request.deadline is not None:
            timer = threading.Timer(self.request.deadline, self._on_deadline)
            timer.daemon = True
            timer.start()
        self.thread.start()
        stopped_at: float | None = None
        try:
            while self.thread.is_alive():
                self.thread.join(0.1)
                if self.stop.is_set() and stopped_at is None:
                    stopped_at = time.monotonic()
                    self._say_stopping()
                if stopped_at is not None and (
                    self.hurry.is_set() or time.monotonic() - stopped_at >= self.request.grace
                ):
                    if self.hurry.is_set() and not self.deadline_reached.is_set():
                        log.info("stopping now: %s in flight reported as not reached", count(self.in_flight(), "host"))
                    break  # in-flight hosts past the grace period are reported as not reached
        finally:
            if timer is not None:
                timer.cancel()
            with self.lock:
                self.closed = True
        if self.failure is not None:
            raise self.failure
        return set(self.finished)


def run_scan(request: ScanRequest) -> ScanOutcome:
    """Scan every inventory host, evaluate every policy, and build the report.

    Hosts stream: each is evaluated as it finishes and added to a `ReportAssembly` that writes it
    to a `HostSpill` (a temp file), and only running counts stay in memory, so memory does not
    grow with the estate (docs/performance.md). The outcome's `hosts` reads them back from the
    spill, by name; call `ScanOutcome.close()` when done with the report.
    """
    started = request.started_at or now_rfc3339()
    today = datetime.now(UTC).date()
    spill = HostSpill()
    assembly = ReportAssembly(spill)

    logon = LogonPolicy(concurrency=request.concurrency, max_auth_failures=request.max_auth_failures)
    clock = time.perf_counter()
    evaluating = 0.0  # seconds spent evaluating, summed over hosts (for -v; two clock reads a host)

    def record(observation: Observation) -> None:
        nonlocal evaluating
        began = time.perf_counter()
        setting = assess(observation)  # once per host: the rules and the host report share it
        evaluated = evaluate(observation, request.policies, setting=setting)
        results = apply_waivers(observation.target, evaluated, request.waivers, today=today)
        evaluating += time.perf_counter() - began
        assembly.add(observation, results, setting=setting)

    try:
        # Resumed hosts (already in memory, from the journal): the last read of each inventory host.
        in_inventory = {target.name for target in request.inventory.targets}
        resumed = {obs.target.name: obs for obs in request.done if obs.target.name in in_inventory}
        for observation in resumed.values():
            record(observation)
            if request.seed_logons:
                logon.record(observation)
        done = set(resumed)
        del resumed
        todo = [target for target in request.inventory.targets if target.name not in done]
        # Progress draws only on a terminal; a StringIO (not a TTY) turns it off for JSON logs.
        stream = sys.stderr if request.progress else io.StringIO()
        sites: dict[str, int] = {}
        for target in request.inventory.targets:
            sites[target.site] = sites.get(target.site, 0) + 1
        with Progress(total=len(request.inventory.targets), stream=stream, sites=sites) as progress:
            for observation in request.done:
                if observation.target.name in done:
                    progress.advance(observation)
            collector = _Collector(request, todo, progress, record, logon)
            with _stop_on_signals(collector.stop, collector.hurry):
                finished = collector.wait()
        deadline_reached = collector.deadline_reached.is_set()
        interrupted = collector.stop.is_set() and not deadline_reached
        for observation in _missing(done | finished, request, deadline_reached=deadline_reached):
            record(observation)
    except BaseException:
        spill.close()
        raise
    log.debug(
        "collection: %d hosts (%d from the journal) in %.1f ms; evaluation: %.1f ms in total",
        len(request.inventory.targets),
        len(done),
        (time.perf_counter() - clock) * 1000,
        evaluating * 1000,
    )
    scan = ScanInfo(
        id=request.scan_id or str(uuid.uuid4()),
        started_at=started,
        finished_at=now_rfc3339(),
        # The spec each policy was loaded from (built-in name or file path), so `policy explain`
        # can load the same policies again from the report.
        policies=[policy.source.removeprefix("builtin:") for policy in request.policies],
        inventory=request.inventory.path,
        interrupted=interrupted,
        policy_refs=[_policy_ref(policy) for policy in request.policies],
    )
    rule_ids = assembly.tally.rule_ids
    waivers = _waivers_section(request, rule_ids, today) if request.waivers is not None else None
    sources = [
        InventorySource(type=s.type, name=s.name, hosts=s.hosts, skipped=dict(s.skipped))
        for s in request.inventory.sources
    ]
    header = assembly.header(scan, tool_version=__version__, waivers=waivers, inventory_sources=sources)
    code = assembly.exit_code(interrupted=interrupted, fail_on=request.fail_on, min_coverage=request.min_coverage)
    if interrupted:
        code = combine(code, ExitCode.INTERRUPTED)
    breaker = logon.stop_message() if logon.tripped else _site_breakers(collector.stopped_sites)
    if breaker is not None:
        # The credentials are wrong for the whole estate: the job is broken, as with a bad
        # credential source (README, exit codes).
        code = combine(code, ExitCode.USAGE)
    return ScanOutcome(
        header=header,
        hosts=assembly.hosts(),
        code=code,
        deadline_reached=deadline_reached,
        spill=spill,
        breaker=breaker,
    )


def _site_breakers(stopped: dict[str, str]) -> str | None:
    """Return why the breakers of sites' workers stopped them, one clause per site, or None."""
    if not stopped:
        return None
    return "; ".join(f"site {site}: {message}" for site, message in sorted(stopped.items()))


def _policy_ref(policy: Policy) -> PolicyRef:
    """Name a policy by name, absolute source and content hash (`policy explain` reloads it)."""
    source = policy.source
    if not source.startswith("builtin:"):
        source = str(Path(source).resolve())
    return PolicyRef(name=policy.name, source=source, sha256=policy.sha256)


def _waiver_entry(ref: WaiverRef) -> WaiverEntry:
    return WaiverEntry(
        label=ref.label,
        rules=list(ref.rules),
        expires=ref.expires.isoformat(),
        owner=ref.owner,
        ticket=ref.ticket,
        source=ref.source,
    )


def _waivers_section(request: ScanRequest, rule_ids: set[str], today: date) -> WaiversSection:
    """Return the report's waiver section: expiring soon, expired, and matching nothing."""
    assert request.waivers is not None
    summary = summarize(
        request.waivers,
        request.inventory.targets,
        rule_ids,
        today=today,
        warn_days=request.waiver_warn_days,
    )
    return WaiversSection(
        file=request.waivers.path,
        warn_days=request.waiver_warn_days,
        expiring=[_waiver_entry(r) for r in summary.expiring],
        expired=[_waiver_entry(r) for r in summary.expired],
        unmatched=[_waiver_entry(r) for r in summary.unmatched],
    )


def _missing(seen: set[str], request: ScanRequest, *, deadline_reached: bool) -> Iterator[Observation]:
    """Yield an error observation for every inventory host not in `seen`, in inventory order."""
    # An interrupted or deadline-cut run lacks the hosts it never reached (or that were still in
    # flight when the grace period ended): they are errors, never passes (docs/domain.md#unread-hosts).
    if deadline_reached:
        missing = HostError(
            stage=Stage.TIMEOUT,
            reason="deadline",
            message="the scan deadline (--deadline) passed before this host was read",
        )
    else:
        missing = HostError(
            stage=Stage.TIMEOUT, reason="interrupted", message="scan interrupted before this host"
        )
    for target in request.inventory.targets:
        if target.name not in seen:
            yield Observation(target=target, error=missing)


def write_report(header: ReportHeader, hosts: Hosts, fmt: Format, output: str | None, *, color: bool) -> None:
    """Render the report to stdout, or atomically to a file, host by host."""
    if output is None or output == "-":
        render(header, hosts, fmt, sys.stdout, color=color and output is None)  # `-o -`: never colour
        sys.stdout.flush()
    else:
        with atomic_text(output) as out:
            render(header, hosts, fmt, out, color=False)
