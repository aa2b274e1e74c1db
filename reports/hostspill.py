"""Keep a scan's host reports on disk, not in memory: a temp file of JSON lines and a tiny index.

A 10,000-host scan held every `Observation`, `RuleResult` and `HostReport` until the report was
written (about 18 KB per host, docs/performance.md). The spill appends each host as it finishes
and keeps only its offsets, name, status rank and read flag in memory (well under 200 bytes per
host); `SpilledHosts`, the production `Hosts` (reports/hosts.py), then reads the hosts back one at
a time, in report order or worst-first.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from reports.hosts import host_sort_key
from reports.model import HostReport
from scanner.core.models import Observation
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
        self.was_read = array("b")  # 1: the host was read (has a setting)
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

    def append(self, host: HostReport, observation: Observation | None) -> None:
        """Write one host (and the JSON of its observation, when there is one) to the spill."""
        line = host.model_dump_json().encode("utf-8") + b"\n"
        extra = observation.model_dump_json().encode("utf-8") + b"\n" if observation is not None else b""
        with self._lock:
            self._host_at.append(self._flushed + len(self._buffer))
            self._host_len.append(len(line) - 1)
            self._obs_len.append(len(extra) - 1 if extra else -1)
            self.rank.append(-STATUS_RANK[host.status])  # negated: worst sorts first
            self.was_read.append(host.setting is not None)
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

    def by_name(self) -> SpilledHosts:
        """Return every host appended so far, in report order (by `host_sort_key` of the name)."""
        names = self.names
        return SpilledHosts(self, array("l", sorted(range(len(names)), key=lambda i: host_sort_key(names[i]))))

    def close(self) -> None:
        """Close (and so delete) the spill file."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._fd = None
        self._buffer = bytearray()


class SpilledHosts:
    """The hosts of a `HostSpill` in a given order (indexes into it): each is read when used."""

    def __init__(self, spill: HostSpill, order: array[int]) -> None:
        self._spill = spill
        self._order = order

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[HostReport]:
        spill = self._spill
        return (spill.host(index) for index in self._order)

    def __repr__(self) -> str:
        return f"SpilledHosts({len(self._order)} hosts on disk)"

    def _view(self, order: Iterable[int]) -> SpilledHosts:
        return SpilledHosts(self._spill, array("l", order))

    def ordered(self, key: Callable[[str], Any]) -> SpilledHosts:
        """Return the same hosts sorted by `key(name)` (stable), without reading them."""
        names = self._spill.names
        return self._view(sorted(self._order, key=lambda i: key(names[i])))

    def worst_first(self, *, skip: Status | None = None) -> SpilledHosts:
        """Return the hosts worst status first, then by name; without those of status `skip`."""
        names, rank = self._spill.names, self._spill.rank
        skipped = -STATUS_RANK[skip] if skip is not None else None
        kept = [i for i in self._order if rank[i] != skipped]
        return self._view(sorted(kept, key=lambda i: (rank[i], host_sort_key(names[i]))))

    def count(self, status: Status) -> int:
        """Return how many hosts have `status`, without reading them."""
        rank, wanted = self._spill.rank, -STATUS_RANK[status]
        return sum(1 for index in self._order if rank[index] == wanted)

    def read_count(self) -> int:
        """Return how many hosts were read (have a setting), without reading them."""
        was_read = self._spill.was_read
        return sum(was_read[index] for index in self._order)

    def with_observations(self) -> Iterator[tuple[HostReport, str | None]]:
        """Yield each host with the JSON of its raw observation (None when not kept)."""
        spill = self._spill
        for index in self._order:
            yield spill.host(index), spill.observation_json(index)
