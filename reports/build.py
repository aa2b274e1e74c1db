"""Assemble the ScanReport from observations and rule results, and derive the exit code."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction

from reports.model import HostReport, ScanInfo, ScanReport, Summary, Tool
from scanner.core.exitcodes import ExitCode, combine
from scanner.core.models import HostError, Observation, Stage
from scanner.core.results import RuleResult, Severity, Status, worst
from scanner.core.semantics import assess

# Keys of Summary.modes, always all present and in this order so the JSON shape never varies.
MODE_KEYS: tuple[str, ...] = ("0", "1", "2", "unknown", "not_applicable")

# Coverage keeps 4 decimals (model.Summary). It is rounded DOWN so that 1.0 (100 %) can only mean
# "every host was read": 99,999 of 100,000 must not display as complete (docs/domain.md#unread-hosts:
# never confuse "could not see" with "compliant").
_COVERAGE_SCALE = 10_000

# An observation that carries neither OS facts nor an error is a collector bug; the report still
# must not present that host as assessed, so it gets this error instead (fail closed).
_INCOMPLETE_OBSERVATION = HostError(
    stage=Stage.COLLECT,
    reason="incomplete_observation",
    message="the collector returned no OS facts and no error for this host",
)


def host_sort_key(name: str) -> tuple[str, str]:
    """Return the ordering key of a host name: case-insensitive first, then exact."""
    return (name.casefold(), name)


def coverage_of(read: int, total: int) -> float:
    """Return read/total rounded down to 4 decimals; 0.0 for an empty inventory.

    An empty inventory covers nothing: a scan that read no host proves nothing, so it reports
    0.0 and, with the default --min-coverage 1.0, exits INCOMPLETE instead of "compliant".
    """
    if total <= 0:
        return 0.0
    return (read * _COVERAGE_SCALE // total) / _COVERAGE_SCALE


def host_report(observation: Observation, results: Sequence[RuleResult]) -> HostReport:
    """Return one host's report entry: its facts, setting and results ordered by rule id."""
    target = observation.target
    setting = assess(observation)
    error = observation.error
    if error is None and setting is None:
        error = _INCOMPLETE_OBSERVATION
    ordered = sorted(results, key=lambda r: (r.rule_id, r.finding_id))
    status = worst([r.status for r in ordered])
    if error is not None:
        status = Status.ERROR  # unread host: error even when no rule produced a result
    return HostReport(
        name=target.name,
        address=target.address,
        port=target.port,
        tags=dict(sorted(target.tags.items())),
        status=status,
        requests=observation.requests,
        os=observation.os,
        setting=setting if error is None else None,
        error=error,
        results=ordered,
    )


def build_report(
    observations: Sequence[Observation],
    results: Mapping[str, Sequence[RuleResult]],
    scan: ScanInfo,
    *,
    tool_version: str,
) -> ScanReport:
    """Build the deterministic report: hosts by name, results by rule id, headline counts.

    `results` is keyed by target name. Raises ValueError when two observations share a name or
    when results name a host not in `observations` (both are caller bugs: the inventory already
    refuses duplicate hosts, case-insensitively).
    """
    names: set[str] = set()
    for observation in observations:
        name = observation.target.name
        if name in names:
            # results are keyed by name: two hosts of one name would share (and swap) results.
            raise ValueError(f"duplicate host in observations: {name!r}")
        names.add(name)
    unknown = sorted(set(results) - names)
    if unknown:
        raise ValueError(f"results for hosts that were not observed: {unknown[:5]!r}")

    hosts = [host_report(o, results.get(o.target.name, ())) for o in observations]
    hosts.sort(key=lambda h: host_sort_key(h.name))

    tally = Tally()
    for host in hosts:
        tally.add(host)
    return ScanReport(tool=Tool(version=tool_version), scan=scan, summary=tally.summary(), hosts=hosts)


class Tally:
    """Running counts over host reports: the summary and the exit-code inputs, one host at a time.

    A streamed scan (scanner/engine/run.py) adds each host as it finishes, so neither the summary nor
    the exit code needs every host in memory at the end.
    """

    def __init__(self) -> None:
        self.total = 0
        self.by_status = {status.value: 0 for status in Status}
        self.modes = dict.fromkeys(MODE_KEYS, 0)
        self.read = 0
        self.requests = 0
        self.covered = 0
        self.fail_ranks: set[int] = set()  # severity ranks of `fail` results
        self.rule_ids: set[str] = set()

    def add(self, host: HostReport) -> None:
        """Count one host."""
        self.total += 1
        self.by_status[host.status.value] += 1
        self.requests += host.requests
        if host.setting is not None:
            self.read += 1
            self.modes[str(host.setting.effective_mode)] += 1
        if is_covered(host):
            self.covered += 1
        for result in host.results:
            self.rule_ids.add(result.rule_id)
            if result.status is Status.FAIL:
                self.fail_ranks.add(result.severity.rank)

    def summary(self) -> Summary:
        """Return the report's headline counts."""
        return Summary(
            hosts_total=self.total,
            hosts_by_status=dict(self.by_status),
            coverage=coverage_of(self.read, self.total),
            modes=dict(self.modes),
            requests_total=self.requests,
        )


def is_covered(host: HostReport) -> bool:
    """Return whether a host was read and every rule could be evaluated on it."""
    return (
        host.error is None
        and host.setting is not None
        and all(r.status is not Status.ERROR for r in host.results)
    )


def exit_code(report: ScanReport, *, fail_on: Severity, min_coverage: float) -> ExitCode:
    """Return the process exit code by the README precedence 130 > 2 > 3 > 1 > 0.

    INTERRUPTED when the scan was interrupted; INCOMPLETE when the exact fraction of covered
    hosts (read, and no rule in error) is below `min_coverage` (an empty inventory covers
    nothing); FINDINGS when a result is `fail` at or above `fail_on` (waived never counts).
    USAGE never comes from a report: a bad `min_coverage` raises ValueError for the CLI to map.
    """
    tally = Tally()
    for host in report.hosts:
        tally.add(host)
    return exit_code_of(tally, interrupted=report.scan.interrupted, fail_on=fail_on, min_coverage=min_coverage)


def exit_code_of(tally: Tally, *, interrupted: bool, fail_on: Severity, min_coverage: float) -> ExitCode:
    """Return the exit code of `exit_code` from running counts (a streamed scan's)."""
    if not 0.0 <= min_coverage <= 1.0:
        raise ValueError(f"min_coverage must be between 0 and 1, got {min_coverage!r}")
    codes: list[ExitCode] = [ExitCode.OK]
    if interrupted:
        codes.append(ExitCode.INTERRUPTED)
    total = tally.total
    covered = tally.covered
    # Exact rational comparison: float division would let 0.95 vs 19/20 fall either way, and the
    # summary's rounded coverage would hide one unread host in a large estate.
    fraction = Fraction(covered, total) if total else Fraction(0)
    if fraction < Fraction(repr(min_coverage)):
        codes.append(ExitCode.INCOMPLETE)
    if any(rank >= fail_on.rank for rank in tally.fail_ranks):
        codes.append(ExitCode.FINDINGS)
    return combine(*codes)
