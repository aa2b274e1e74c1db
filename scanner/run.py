"""Run one scan: inventory -> collect -> evaluate -> report. The CLI and the demo both call this."""

from __future__ import annotations

import io
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import FrameType

from reports.build import build_report, exit_code
from reports.formats import Format, render
from reports.json_report import json_chunks
from reports.model import ScanInfo, ScanReport, WaiverEntry, WaiversSection
from reports.progress import Progress
from rules.evaluate import evaluate
from rules.loader import Policy
from rules.results import RuleResult, Severity
from rules.waivers import EXPIRY_WARNING_DAYS, WaiverRef, WaiverSet, apply_waivers, summarize
from scanner import __version__
from scanner.atomic import write_atomic
from scanner.collect import collect_all
from scanner.exitcodes import ExitCode, combine
from scanner.inventory import Inventory
from scanner.models import CollectOptions, Credentials, HostError, Observation, Stage, Target


@dataclass(frozen=True)
class ScanRequest:
    """Everything one scan needs, already loaded and validated."""

    inventory: Inventory
    policies: Sequence[Policy]
    credentials: Credentials
    options: CollectOptions = field(default_factory=CollectOptions)
    concurrency: int = 64
    fail_on: Severity = Severity.LOW
    min_coverage: float = 1.0
    waivers: WaiverSet | None = None
    waiver_warn_days: int = EXPIRY_WARNING_DAYS
    # Whole-run limit in seconds: hosts not reached by then get error timeout/deadline.
    deadline: float | None = None
    # After SIGINT/SIGTERM or the deadline: how long in-flight hosts may still finish.
    grace: float = 10.0
    # Resume (scanner/journal.py): keep the interrupted scan's id and start, skip finished hosts.
    scan_id: str | None = None
    started_at: str | None = None
    done: Sequence[Observation] = ()
    # Called once per newly finished host (serialised), e.g. to append it to the journal.
    on_observation: Callable[[Observation], None] | None = None
    progress: bool = True


@dataclass(frozen=True)
class ScanOutcome:
    """The report and the exit code it implies."""

    report: ScanReport
    code: ExitCode
    observations: tuple[Observation, ...] = ()  # one per inventory host, in inventory order
    deadline_reached: bool = False


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

    def __init__(self, request: ScanRequest, targets: Sequence[Target], progress: Progress) -> None:
        self.request = request
        self.targets = targets
        self.progress = progress
        self.stop = threading.Event()
        self.hurry = threading.Event()
        self.deadline_reached = threading.Event()
        self.finished: dict[str, Observation] = {}
        self.closed = False
        self.lock = threading.Lock()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="natt-collect-main", daemon=True)

    def _on_result(self, observation: Observation) -> None:
        with self.lock:
            if self.closed:
                return  # finished after the grace period: the report already counts it as unreached
            self.finished[observation.target.name] = observation
            if self.request.on_observation is not None:
                self.request.on_observation(observation)
        self.progress.advance(observation)

    def _run(self) -> None:
        try:
            collect_all(
                self.targets,
                self.request.credentials,
                self.request.options,
                concurrency=self.request.concurrency,
                on_result=self._on_result,
                stop=self.stop,
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread in wait()
            self.failure = exc

    def _on_deadline(self) -> None:
        if not self.stop.is_set():
            self.deadline_reached.set()
            self.stop.set()

    def wait(self) -> dict[str, Observation]:
        """Collect until done, or until the grace period after a stop ends; return what finished."""
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
                if stopped_at is not None and (
                    self.hurry.is_set() or time.monotonic() - stopped_at >= self.request.grace
                ):
                    break  # in-flight hosts past the grace period are reported as not reached
        finally:
            if timer is not None:
                timer.cancel()
            with self.lock:
                self.closed = True
        if self.failure is not None:
            raise self.failure
        return dict(self.finished)


def run_scan(request: ScanRequest) -> ScanOutcome:
    """Scan every inventory host, evaluate every policy, and build the report."""
    started = request.started_at or now_rfc3339()
    done = {obs.target.name: obs for obs in request.done}
    todo = [target for target in request.inventory.targets if target.name not in done]
    # Progress draws only on a terminal; a StringIO (not a TTY) turns it off for JSON logs.
    stream = sys.stderr if request.progress else io.StringIO()
    with Progress(total=len(request.inventory.targets), stream=stream) as progress:
        for observation in done.values():
            progress.advance(observation)
        collector = _Collector(request, todo, progress)
        with _stop_on_signals(collector.stop, collector.hurry):
            finished = collector.wait()
    deadline_reached = collector.deadline_reached.is_set()
    interrupted = collector.stop.is_set() and not deadline_reached
    observations = _complete({**done, **finished}, request, deadline_reached=deadline_reached)
    today = datetime.now(UTC).date()
    results: dict[str, list[RuleResult]] = {}
    for observation in observations:
        evaluated = evaluate(observation, request.policies)
        results[observation.target.name] = apply_waivers(
            observation.target, evaluated, request.waivers, today=today
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
    )
    report = build_report(observations, results, scan, tool_version=__version__)
    if request.waivers is not None:
        section = _waivers_section(request, results, today)
        report = report.model_copy(update={"waivers": section})
    code = exit_code(report, fail_on=request.fail_on, min_coverage=request.min_coverage)
    if interrupted:
        code = combine(code, ExitCode.INTERRUPTED)
    return ScanOutcome(
        report=report, code=code, observations=tuple(observations), deadline_reached=deadline_reached
    )


def _waiver_entry(ref: WaiverRef) -> WaiverEntry:
    return WaiverEntry(
        label=ref.label,
        rules=list(ref.rules),
        expires=ref.expires.isoformat(),
        owner=ref.owner,
        ticket=ref.ticket,
        source=ref.source,
    )


def _waivers_section(
    request: ScanRequest, results: dict[str, list[RuleResult]], today: date
) -> WaiversSection:
    """Return the report's waiver section: expiring soon, expired, and matching nothing."""
    assert request.waivers is not None
    rule_ids = {r.rule_id for host_results in results.values() for r in host_results}
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


def _complete(
    seen: dict[str, Observation], request: ScanRequest, *, deadline_reached: bool
) -> list[Observation]:
    """Return exactly one observation per inventory host, in inventory order."""
    # An interrupted or deadline-cut run lacks the hosts it never reached (or that were still in
    # flight when the grace period ended): they are errors, never passes (DOMAIN.md section 2).
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
    return [
        seen.get(target.name, Observation(target=target, error=missing))
        for target in request.inventory.targets
    ]


def write_report(report: ScanReport, fmt: Format, output: str | None, *, color: bool) -> None:
    """Render the report to stdout, or atomically to a file."""
    chunks: Iterable[str] = (
        json_chunks(report) if fmt is Format.JSON else (render(report, fmt, color=color and output is None),)
    )
    if output is None or output == "-":
        for chunk in chunks:
            sys.stdout.write(chunk)
        sys.stdout.flush()
    else:
        write_atomic(Path(output), (chunk.encode("utf-8") for chunk in chunks))
