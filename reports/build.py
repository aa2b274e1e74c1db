"""Assemble a report from observations and rule results, one host at a time, and its exit code.

`ReportAssembly` is the one assembly path: the engine (scanner/engine/run.py) feeds it each host
as it finishes, and the tests feed it hand-built or evaluated hosts through the same calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from reports.hosts import Hosts, HostSink
from reports.hosts import host_sort_key as host_sort_key  # the ordering key, re-exported for callers
from reports.model import (
    HostReport,
    InventorySection,
    InventorySource,
    ReportHeader,
    ScanInfo,
    SiteSummary,
    Summary,
    Tool,
    WaiversSection,
)
from scanner.core.exitcodes import ExitCode, combine
from scanner.core.models import HostError, Observation, OsSource, Stage, parse_version
from scanner.core.results import RuleResult, Severity, Status, worst
from scanner.core.semantics import Setting

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


def coverage_of(read: int, total: int) -> float:
    """Return read/total rounded down to 4 decimals; 0.0 for an empty inventory.

    An empty inventory covers nothing: a scan that read no host proves nothing, so it reports
    0.0 and, with the default --min-coverage 1.0, exits INCOMPLETE instead of "compliant".
    """
    if total <= 0:
        return 0.0
    return (read * _COVERAGE_SCALE // total) / _COVERAGE_SCALE


def os_version_disagrees(observation: Observation) -> bool:
    """Return whether the OS version read from the host contradicts the inventory's os_version.

    Only the parts the inventory gives are compared ("10.0" agrees with 10.0.19045). A version
    taken from the inventory itself (no read) cannot disagree (docs/inventory.md#os-facts-from-the-inventory).
    """
    said = observation.target.os_version
    os_info = observation.os
    if said is None or os_info is None or os_info.source is OsSource.INVENTORY:
        return False
    expected, seen = parse_version(said), parse_version(os_info.version)
    return expected is not None and seen is not None and seen[: len(expected)] != expected


def host_report(observation: Observation, results: Sequence[RuleResult], setting: Setting | None) -> HostReport:
    """Return one host's report entry: its facts, its `setting` and its results ordered by rule id.

    `setting` is `assess(observation)`, computed once by the caller and also given to the rules
    (rules/evaluate.py: `evaluate(..., setting=)`), so a host is assessed once.
    """
    target = observation.target
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


class ReportAssembly:
    """Turn observations and their results into a report's hosts, header and exit code.

    Each host goes to `sink` (a disk spill in a scan, memory in tests) as it is added; only
    running counts (`Tally`) and the names seen stay here, so memory does not grow with the
    hosts' content (docs/performance.md, "Memory").
    """

    def __init__(self, sink: HostSink) -> None:
        self.sink = sink
        self.tally = Tally()
        self._names: set[str] = set()
        self.os_version_disagreements = 0

    def add(self, observation: Observation, results: Sequence[RuleResult], *, setting: Setting | None) -> HostReport:
        """Add one host; raise ValueError when a host of that name was already added.

        Two hosts of one name would be one row in history and one identity in drift; the
        inventory already refuses duplicates (case-insensitively), so this is a caller bug.
        """
        name = observation.target.name
        if name in self._names:
            raise ValueError(f"duplicate host in observations: {name!r}")
        self._names.add(name)
        host = host_report(observation, results, setting)
        if os_version_disagrees(observation):
            self.os_version_disagreements += 1
        self.sink.append(host, observation)
        self.tally.add(host, site=observation.target.site)
        return host

    def hosts(self) -> Hosts:
        """Return the hosts added so far, in report order (by name)."""
        return self.sink.by_name()

    def header(
        self,
        scan: ScanInfo,
        *,
        tool_version: str,
        waivers: WaiversSection | None = None,
        inventory_sources: Sequence[InventorySource] = (),
    ) -> ReportHeader:
        """Return the report header: the scan, the headline counts of every host added, the waivers.

        The inventory section is there when the inventory lists sources or a host's read OS
        version contradicted the inventory's; otherwise it is null.
        """
        inventory = None
        if inventory_sources or self.os_version_disagreements:
            inventory = InventorySection(
                sources=list(inventory_sources), os_version_disagreements=self.os_version_disagreements
            )
        return ReportHeader(
            tool=Tool(version=tool_version),
            scan=scan,
            summary=self.tally.summary(),
            waivers=waivers,
            inventory=inventory,
        )

    def exit_code(self, *, interrupted: bool, fail_on: Severity, min_coverage: float) -> ExitCode:
        """Return the exit code of the hosts added so far (`exit_code_of`)."""
        return exit_code_of(self.tally, interrupted=interrupted, fail_on=fail_on, min_coverage=min_coverage)


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
        self.auth_rejected = 0
        self.covered = 0
        self.fail_ranks: set[int] = set()  # severity ranks of `fail` results
        self.rule_ids: set[str] = set()
        self.sites: dict[str, list[int]] = {}  # site -> [hosts, read]

    def add(self, host: HostReport, *, site: str | None = None) -> None:
        """Count one host, and under its site when it has one."""
        self.total += 1
        if site is not None:
            counts = self.sites.setdefault(site, [0, 0])
            counts[0] += 1
            counts[1] += host.setting is not None
        self.by_status[host.status.value] += 1
        self.requests += host.requests
        if host.error is not None and host.error.stage is Stage.AUTH and host.error.reason == "unauthorized":
            self.auth_rejected += 1
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
            sites={
                site: SiteSummary(hosts=hosts, read=read, coverage=coverage_of(read, hosts))
                for site, (hosts, read) in sorted(self.sites.items())
            },
            auth_rejected=self.auth_rejected,
        )


def is_covered(host: HostReport) -> bool:
    """Return whether a host was read and every rule could be evaluated on it."""
    return (
        host.error is None
        and host.setting is not None
        and all(r.status is not Status.ERROR for r in host.results)
    )


def exit_code_of(tally: Tally, *, interrupted: bool, fail_on: Severity, min_coverage: float) -> ExitCode:
    """Return the process exit code by the README precedence 130 > 2 > 3 > 1 > 0.

    INTERRUPTED when the scan was interrupted; INCOMPLETE when the exact fraction of covered
    hosts (read, and no rule in error) is below `min_coverage` (an empty inventory covers
    nothing); FINDINGS when a result is `fail` at or above `fail_on` (waived never counts).
    USAGE never comes from a report: a bad `min_coverage` raises ValueError for the CLI to map.
    """
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
