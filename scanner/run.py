"""Run one scan: inventory -> collect -> evaluate -> report. The CLI and the demo both call this."""

from __future__ import annotations

import signal
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from reports.build import build_report, exit_code
from reports.formats import Format, render
from reports.model import ScanInfo, ScanReport
from reports.progress import Progress
from rules.evaluate import evaluate
from rules.loader import Policy
from rules.results import RuleResult, Severity
from scanner import __version__
from scanner.atomic import write_atomic
from scanner.collect import collect_all
from scanner.exitcodes import ExitCode, combine
from scanner.inventory import Inventory
from scanner.models import CollectOptions, Credentials, HostError, Observation, Stage


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


@dataclass(frozen=True)
class ScanOutcome:
    """The report and the exit code it implies."""

    report: ScanReport
    code: ExitCode


def now_rfc3339() -> str:
    """Return the current UTC time as RFC 3339 with a Z, to the second."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set `stop` on SIGINT/SIGTERM so no new host is dispatched; restore handlers after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_scan(request: ScanRequest) -> ScanOutcome:
    """Scan every inventory host, evaluate every policy, and build the report."""
    started = now_rfc3339()
    stop = threading.Event()
    targets = request.inventory.targets
    with _stop_on_signals(stop), Progress(total=len(targets), stream=sys.stderr) as progress:
        observations = collect_all(
            targets,
            request.credentials,
            request.options,
            concurrency=request.concurrency,
            on_result=progress.advance,
            stop=stop,
        )
    results: dict[str, list[RuleResult]] = {}
    for observation in observations:
        results[observation.target.name] = evaluate(observation, request.policies)
    scan = ScanInfo(
        id=str(uuid.uuid4()),
        started_at=started,
        finished_at=now_rfc3339(),
        policies=[policy.name for policy in request.policies],
        inventory=request.inventory.path,
        interrupted=stop.is_set(),
    )
    report = build_report(_complete(observations, request), results, scan, tool_version=__version__)
    code = exit_code(report, fail_on=request.fail_on, min_coverage=request.min_coverage)
    if stop.is_set():
        code = combine(code, ExitCode.INTERRUPTED)
    return ScanOutcome(report=report, code=code)


def _complete(observations: Sequence[Observation], request: ScanRequest) -> list[Observation]:
    """Return exactly one observation per inventory host, in inventory order."""
    # collect_all gives one per target when it finishes; an interrupted run may lack some.
    seen = {obs.target.name: obs for obs in observations}
    return [
        seen.get(
            target.name,
            Observation(
                target=target,
                error=HostError(
                    stage=Stage.TIMEOUT, reason="interrupted", message="scan interrupted before this host"
                ),
            ),
        )
        for target in request.inventory.targets
    ]


def write_report(report: ScanReport, fmt: Format, output: str | None, *, color: bool) -> None:
    """Render the report to stdout, or atomically to a file."""
    text = render(report, fmt, color=color and output is None)
    if output is None or output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomic(Path(output), text.encode("utf-8"))
