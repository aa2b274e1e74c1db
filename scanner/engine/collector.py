"""The engine seam: what reads the hosts of a scan (docs/architecture.md#a-new-engine).

`run_scan` (scanner/engine/run.py) streams every observation into the report whatever read it; a
`Collector` is that reader. Two implementations: `LocalCollector`, the thread pool of this machine
(scanner/engine/pool.py), and the sites engine's coordinator (scanner/engine/sites/coordinator.py),
which sends the hosts to Celery workers at each site (docs/sites.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from scanner.collect.wsman.auth import AuthMaterial
from scanner.core.models import DEFAULT_CONCURRENCY, CollectOptions, Credentials, Observation, Target
from scanner.engine.logon import LogonPolicy
from scanner.engine.pool import collect_all


class Collector(Protocol):
    """Read hosts and hand each finished one to `on_result`, the contract of `collect_all`.

    `on_result` is called exactly once per host, never concurrently, in completion order; once
    `stop` is set no new host is started; a host's failure is an Observation with an error, never
    an exception; an exception from `on_result` stops the collection and is re-raised.
    """

    def collect(
        self, targets: Sequence[Target], *, on_result: Callable[[Observation], None], stop: threading.Event
    ) -> None:
        """Read every target until done or stopped."""


@dataclass(frozen=True)
class LocalCollector:
    """The local engine: this machine's thread pool with the scan account."""

    credentials: Credentials
    options: CollectOptions
    concurrency: int = DEFAULT_CONCURRENCY
    # Proves the credentials on one host before fanning out, and trips the lockout breaker
    # (scanner/engine/logon.py); None: a fresh policy for this collection.
    logon: LogonPolicy | None = None
    # The credentials already proven (the scan's one Kerberos ticket, docs/authentication.md#lockout-safety).
    material: AuthMaterial | None = None

    def collect(
        self, targets: Sequence[Target], *, on_result: Callable[[Observation], None], stop: threading.Event
    ) -> None:
        """Read every target on the thread pool, streaming each observation (nothing is kept)."""
        collect_all(
            targets,
            self.credentials,
            self.options,
            concurrency=self.concurrency,
            on_result=on_result,
            stop=stop,
            keep=False,
            logon=self.logon,
            material=self.material,
        )
