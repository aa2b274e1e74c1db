"""Scan progress on stderr: a rich progress bar when stderr is a terminal, silence otherwise."""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from scanner.core.models import Observation


class Progress:
    """Show hosts done / total while scanning; the lead calls `advance` once per observation.

    Only counts are shown, never host names or other host text, so nothing a host sends can reach
    the terminal through the bar. Safe to call `advance` from several threads. With `sites` (site
    name -> hosts) naming more than one site, each site gets its own bar under the total; site
    names are inventory text validated as short ASCII tokens (scanner/core/models.py site_problem).
    """

    def __init__(self, total: int, *, stream: TextIO | None = None, sites: Mapping[str, int] | None = None) -> None:
        self.total = total
        self.sites = dict(sites) if sites is not None and len(sites) > 1 else {}
        self._site_tasks: dict[str, TaskID] = {}
        self._site_errors: dict[str, int] = dict.fromkeys(self.sites, 0)
        self.done = 0
        self.errors = 0
        self._stream = stream if stream is not None else sys.stderr
        self._lock = threading.Lock()
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None

    @property
    def enabled(self) -> bool:
        """Return whether a bar is drawn (the stream is a terminal)."""
        isatty = getattr(self._stream, "isatty", None)
        return bool(isatty is not None and isatty())

    def __enter__(self) -> Progress:
        if self.enabled:
            console = Console(file=self._stream, markup=False, emoji=False, highlight=False)
            self._bar = RichProgress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[errors]} unread", markup=False),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("Scanning", total=self.total, errors=0)
            for site, hosts in sorted(self.sites.items()):
                self._site_tasks[site] = self._bar.add_task(f"  site {site}", total=hosts, errors=0)
        return self

    def advance(self, observation: Observation) -> None:
        """Count one finished host (an observation with an error counts as unread)."""
        with self._lock:
            self.done += 1
            if observation.error is not None or observation.os is None:
                self.errors += 1
            site = observation.target.site
            unread = observation.error is not None or observation.os is None
            if site in self._site_errors and unread:
                self._site_errors[site] += 1
            if self._bar is not None and self._task is not None:
                self._bar.update(self._task, advance=1, errors=self.errors)
                if site in self._site_tasks:
                    self._bar.update(self._site_tasks[site], advance=1, errors=self._site_errors[site])

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, traceback)
            self._bar = None
