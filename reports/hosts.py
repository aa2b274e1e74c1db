"""The hosts of a report: one small interface, `Hosts`, and its in-memory implementation.

A report is a `ReportHeader` plus its hosts. A scan keeps its hosts on disk
(reports/hostspill.py: `SpilledHosts`, docs/performance.md "Memory"); tests and reports read back
from a JSON file or from history keep them in memory (`MemoryHosts`). Renderers, exports, drift
and the history store see only `Hosts`, so both go through the same code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, Protocol

from reports.model import HostReport, ReportDocument, ReportHeader
from scanner.core.models import Observation
from scanner.core.results import STATUS_RANK, Status


def host_sort_key(name: str) -> tuple[str, str]:
    """Return the ordering key of a host name: case-insensitive first, then exact."""
    return (name.casefold(), name)


def host_order_key(host: HostReport) -> tuple[int, str, str]:
    """Return the worst-first ordering: worst status first, then name (case-insensitive, exact)."""
    return (-STATUS_RANK[host.status], host.name.casefold(), host.name)


class Hosts(Protocol):
    """The host reports of one report, re-iterable in report order (the order of the JSON file)."""

    def __len__(self) -> int:
        """Return how many hosts the report has."""

    def __iter__(self) -> Iterator[HostReport]:
        """Yield the hosts in report order, one at a time."""

    def ordered(self, key: Callable[[str], Any]) -> Iterable[HostReport]:
        """Return the same hosts sorted by `key(name)` (stable), read one at a time."""

    def worst_first(self, *, skip: Status | None = None) -> Iterable[HostReport]:
        """Return the hosts worst status first, then by name; without those of status `skip`."""

    def count(self, status: Status) -> int:
        """Return how many hosts have `status`, without reading them."""

    def read_count(self) -> int:
        """Return how many hosts were read (have a setting), without reading them."""

    def with_observations(self) -> Iterable[tuple[HostReport, str | None]]:
        """Yield each host in report order with the JSON of its raw observation (None: not kept)."""


class HostSink(Protocol):
    """Where a report's hosts go while it is assembled (reports/build.py: `ReportAssembly`)."""

    def append(self, host: HostReport, observation: Observation | None) -> None:
        """Keep one host and its raw observation (None when there is none)."""

    def by_name(self) -> Hosts:
        """Return every host appended so far, in report order (by `host_sort_key` of the name)."""


class Report(NamedTuple):
    """A report: its header and its hosts."""

    header: ReportHeader
    hosts: Hosts


class MemoryHosts:
    """Host reports held in memory, in the order given: tests, and reports read back whole."""

    def __init__(self, entries: Iterable[tuple[HostReport, Observation | None]]) -> None:
        self._entries = tuple(entries)
        self._counts = Counter(host.status for host, _ in self._entries)
        self._read = sum(1 for host, _ in self._entries if host.setting is not None)

    @classmethod
    def of(cls, hosts: Iterable[HostReport]) -> MemoryHosts:
        """Return these hosts, in this order, without observations."""
        return cls((host, None) for host in hosts)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[HostReport]:
        return (host for host, _ in self._entries)

    def __repr__(self) -> str:
        return f"MemoryHosts({len(self._entries)} hosts)"

    def ordered(self, key: Callable[[str], Any]) -> list[HostReport]:
        """Return the same hosts sorted by `key(name)` (stable)."""
        return sorted(self, key=lambda host: key(host.name))

    def worst_first(self, *, skip: Status | None = None) -> list[HostReport]:
        """Return the hosts worst status first, then by name; without those of status `skip`."""
        return sorted((host for host in self if host.status is not skip), key=host_order_key)

    def count(self, status: Status) -> int:
        """Return how many hosts have `status`."""
        return self._counts[status]

    def read_count(self) -> int:
        """Return how many hosts were read (have a setting)."""
        return self._read

    def with_observations(self) -> Iterator[tuple[HostReport, str | None]]:
        """Yield each host with the JSON of its raw observation (None when not kept)."""
        for host, observation in self._entries:
            yield host, observation.model_dump_json() if observation is not None else None


class HostBuffer:
    """The in-memory `HostSink`: collects hosts for tests and for callers without a spill."""

    def __init__(self) -> None:
        self._entries: list[tuple[HostReport, Observation | None]] = []

    def append(self, host: HostReport, observation: Observation | None) -> None:
        """Keep one host and its raw observation, as they are (serialised only when read)."""
        self._entries.append((host, observation))

    def by_name(self) -> MemoryHosts:
        """Return every host appended so far, in report order."""
        return MemoryHosts(sorted(self._entries, key=lambda entry: host_sort_key(entry[0].name)))


def parse_report(data: str | bytes) -> Report:
    """Return the report a JSON report file holds, hosts in the file's order.

    Raises pydantic.ValidationError when `data` is not JSON or not a natt-audit report.
    """
    document = ReportDocument.model_validate_json(data)
    return Report(document.header(), MemoryHosts.of(document.hosts))
