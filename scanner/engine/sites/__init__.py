"""The sites engine: one scan across segmented sites, on Celery with a Redis broker (docs/sites.md).

Only the modules that need Celery or its Redis client import them (app.py, coordinator.py,
worker.py, logonstate.py, liveness.py); this package and broker.py and messages.py do not, so natt-audit imports
and scans locally without the optional extra. `require_celery` turns a missing extra into a clear error naming it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import TYPE_CHECKING

from scanner.core.errors import NattError
from scanner.core.models import CollectOptions
from scanner.engine.sites.broker import load_broker

if TYPE_CHECKING:
    from scanner.engine.sites.coordinator import SiteCollector

EXTRA = "natt-audit[sites]"


class SitesUnavailable(NattError):
    """The sites engine was asked for but its optional dependencies are not installed."""


def require_celery() -> None:
    """Raise SitesUnavailable unless Celery with its Redis transport can be imported."""
    missing = [name for name in ("celery", "redis") if importlib.util.find_spec(name) is None]
    if missing:
        raise SitesUnavailable(
            f"the sites engine (--broker) needs {', '.join(missing)}, which is not installed: pip install '{EXTRA}'"
        )


def open_coordinator(
    url: str,
    options: CollectOptions,
    *,
    environ: Mapping[str, str],
    password_file: str | None,
    ca_bundle: str | None,
    site_timeout: float,
    grace: float,
    deadline: float | None,
    max_auth_failures: int | None = None,
) -> SiteCollector:
    """Return the coordinator for a scan with --broker, logged on to the broker (BrokerError: exit 2)."""
    require_celery()
    broker = load_broker(url, environ=environ, password_file=password_file, ca_bundle=ca_bundle)
    # Imported only now: Celery is the optional extra, and a local scan never loads it.
    from scanner.engine.sites.coordinator import SiteCollector

    collector = SiteCollector(
        broker,
        options,
        site_timeout=site_timeout,
        grace=grace,
        deadline=deadline,
        max_auth_failures=max_auth_failures,
    )
    collector.check()
    return collector
