"""Keep a scan's host reports on disk, not in memory: a temp file of JSON lines and a tiny index.

A 10,000-host scan held every `Observation`, `RuleResult` and `HostReport` until the report was
written (about 18 KB per host, docs/performance.md). The spill appends each host as it finishes
and keeps only its offsets, name and status rank in memory (well under 200 bytes per host);
`HostList` then reads the hosts back one at a time, in report order or worst-first.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from array import array
from collections.abc import Callable, Iterator
from typing import IO, Any, SupportsIndex, overload

from reports.model import HostReport
from scanner.core.results import STATUS_RANK, Status

log = logging.getLogger("natt_audit")


class HostSpill:
    """An append-only, anonymous temp file of host reports (each with its raw observation).

    Writes go through a small buffer. If the temp file cannot be created or written (disk full,
    RLIMIT_FSIZE), the spill keeps the rest in memory and says so once: the scan and its report
    must not fail because of the spill, only lose its memory saving.
    """

    _FLUSH_AT = 256 * 1024

    def __init__(self, directory: str | None = None) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._file: IO[bytes] | None = None
        try:
            # Unlinked at once on POSIX: nothing is left behind, even after a crash.
            self._file = tempfile.TemporaryFile(dir=directory, buffering=0)  # noqa: SIM115 - closed by close()
            self._fd = self._file.fileno()
        except OSError as exc:
            self._give_up(exc)
        self._flushed = 0  # bytes [0, _flushed) are in the file, the rest in _buffer
        self._buffer = bytearray()
        self._host_at = array("q")
        self._host_len = array("l")
        self._obs_len = array("l")  # the observation line follows its host line; -1: none
        self.rank = array("b")
        self.names: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    def _give_up(self, exc: OSError) -> None:
        log.warning(
            "cannot write the scan's temp file (%s): keeping the host reports in memory",
            exc.strerror or type(exc).__name__,
        )
        self._fd = None

    def _flush(self) -> None:
        while self._buffer and self._fd is not None:
            try:
                written = os.write(self._fd, self._buffer)
            except OSError as exc:
                self._give_up(exc)
                return
            del self._buffer[:written]
            self._flushed += written

    def append(self, host: HostReport, observation_json: str | None) -> None:
        """Write one host (and the JSON of its observation, when there is one) to the spill."""
        line = host.model_dump_json().encode("utf-8") + b"\n"
        extra = observation_json.encode("utf-8") + b"\n" if observation_json is not None else b""
        with self._lock:
            self._host_at.append(self._flushed + len(self._buffer))
            self._host_len.append(len(line) - 1)
            self._obs_len.append(len(extra) - 1 if extra else -1)
            self.rank.append(-STATUS_RANK[host.status])  # negated: worst sorts first
            self.names.append(host.name)
            self._buffer += line
            self._buffer += extra
            if len(self._buffer) >= self._FLUSH_AT:
                self._flush()

    def _read(self, offset: int, length: int) -> bytes:
        with self._lock:
            on_disk = max(0, min(offset + length, self._flushed) - offset)
            data = os.pread(self._fd_for_read(), on_disk, offset) if on_disk else b""
            start = offset + on_disk - self._flushed
            data += bytes(self._buffer[start : start + length - on_disk])
        if len(data) != length:
            raise OSError(f"the scan's temp file is truncated at offset {offset}")
        return data

    def _fd_for_read(self) -> int:
        if self._file is None:
            raise OSError("the scan's temp file is closed")
        return self._file.fileno()

    def host(self, index: int) -> HostReport:
        """Return the host stored at `index` (append order)."""
        return HostReport.model_validate_json(self._read(self._host_at[index], self._host_len[index]))

    def observation_json(self, index: int) -> str | None:
        """Return the JSON of the observation stored with the host at `index`, if any."""
        length = self._obs_len[index]
        if length < 0:
            return None
        return self._read(self._host_at[index] + self._host_len[index] + 1, length).decode("utf-8")

    def ordered(self, key: Callable[[int], Any]) -> HostList:
        """Return the hosts as a lazy list sorted by `key(index)`."""
        order = array("l", sorted(range(len(self.names)), key=key))
        return HostList(self, order)

    def by_name(self, sort_key: Callable[[str], Any]) -> HostList:
        """Return the hosts sorted by `sort_key(name)`."""
        names = self.names
        return self.ordered(lambda i: sort_key(names[i]))

    def close(self) -> None:
        """Close (and so delete) the spill file."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._fd = None
        self._buffer = bytearray()


class HostList(list[HostReport]):
    """A read-only list of host reports backed by a `HostSpill`: each host is read when used.

    It subclasses `list` so `ScanReport.hosts` keeps its type for isinstance checks and the
    renderers; the list storage itself stays empty. Build the report with
    `ScanReport.model_construct` (validation would copy every host into a real list). pydantic's
    model_dump reads list storage directly, so ScanReport serialises `hosts` by iterating (correct,
    but it loads every host); the renderers stream with `to_plain`/`json_chunks` instead.
    """

    def __init__(self, spill: HostSpill, order: array[int]) -> None:
        super().__init__()
        self.spill = spill
        self.order = order

    def __len__(self) -> int:
        return len(self.order)

    def __bool__(self) -> bool:
        return len(self.order) > 0

    def __iter__(self) -> Iterator[HostReport]:
        for index in self.order:
            yield self.spill.host(index)

    def __reversed__(self) -> Iterator[HostReport]:
        for index in reversed(self.order):
            yield self.spill.host(index)

    @overload
    def __getitem__(self, item: SupportsIndex) -> HostReport: ...

    @overload
    def __getitem__(self, item: slice) -> list[HostReport]: ...

    def __getitem__(self, item: SupportsIndex | slice) -> HostReport | list[HostReport]:
        if isinstance(item, slice):
            return [self.spill.host(index) for index in self.order[item]]
        return self.spill.host(self.order[item])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"HostList({len(self)} hosts on disk)"

    def names(self) -> Iterator[str]:
        """Yield the host names in this list's order, without reading the hosts."""
        for index in self.order:
            yield self.spill.names[index]

    def with_observations(self) -> Iterator[tuple[HostReport, str | None]]:
        """Yield each host with the JSON of its raw observation (None when not kept)."""
        for index in self.order:
            yield self.spill.host(index), self.spill.observation_json(index)

    def worst_first(self, sort_key: Callable[[str], Any]) -> HostList:
        """Return the same hosts worst status first, then by `sort_key(name)`."""
        names, rank = self.spill.names, self.spill.rank
        return HostList(self.spill, array("l", sorted(self.order, key=lambda i: (rank[i], sort_key(names[i])))))

    def count_status(self, status: Status) -> int:
        """Return how many hosts of this list have `status`, without reading them."""
        rank = self.spill.rank
        wanted = -STATUS_RANK[status]
        return sum(1 for index in self.order if rank[index] == wanted)

    def without(self, status: Status) -> HostList:
        """Return this list minus the hosts that have `status`, without reading them."""
        rank = self.spill.rank
        wanted = -STATUS_RANK[status]
        return HostList(self.spill, array("l", (index for index in self.order if rank[index] != wanted)))

    def reordered(self, sort_key: Callable[[str], Any]) -> HostList:
        """Return the same hosts sorted by `sort_key(name)`."""
        names = self.spill.names
        return HostList(self.spill, array("l", sorted(self.order, key=lambda i: sort_key(names[i]))))
