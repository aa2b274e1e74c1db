"""What travels through the broker: a batch of hosts out, a batch's observations back; JSON only.

A task message carries one `Batch` (targets and the per-host limits, never a credential: each
site's worker holds its own account, docs/sites.md#security-model). A worker's result is a
`BatchResult` whose observations the coordinator validates one by one on receipt
(scanner/engine/sites/coordinator.py), so one malformed entry costs one host, not the batch.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from scanner.core.models import CollectOptions, Frozen, Target

TASK_NAME = "natt_audit.collect_batch"
QUEUE_PREFIX = "natt-audit.site."
BATCH_SIZE = 100  # hosts per task: 0.02 broker messages per host, docs/sites.md#sizing
MAX_BATCH = 1000


def queue_for(site: str) -> str:
    """Return the queue a site's workers consume."""
    return QUEUE_PREFIX + site


def site_of_queue(queue: str) -> str | None:
    """Return the site a queue belongs to, or None for a queue that is not a site's."""
    return queue.removeprefix(QUEUE_PREFIX) if queue.startswith(QUEUE_PREFIX) else None


class Limits(Frozen):
    """The per-host limits of the scan, set by the coordinator; TLS trust is the worker's own."""

    host_timeout: float = Field(gt=0)
    connect_timeout: float = Field(gt=0)
    operation_timeout: int = Field(gt=0)
    max_response_bytes: int = Field(gt=0)

    @classmethod
    def of(cls, options: CollectOptions) -> Limits:
        """Return the limits of a scan's collect options."""
        return cls(
            host_timeout=options.host_timeout,
            connect_timeout=options.connect_timeout,
            operation_timeout=options.operation_timeout,
            max_response_bytes=options.max_response_bytes,
        )


class Batch(Frozen):
    """One task: hosts of one site for one scan."""

    scan: str = Field(max_length=100)  # the coordinator's run id, for the worker's logs
    site: str
    targets: tuple[Target, ...] = Field(min_length=1, max_length=MAX_BATCH)
    limits: Limits
    heartbeat: float = Field(gt=0, le=3600)  # seconds between the worker's progress reports
    not_after: float | None = None  # Unix time after which no new host is started (--deadline)
    # The coordinator keeps natt-audit:run:<scan>:alive while it runs (scanner/engine/sites/liveness.py);
    # False from a coordinator that keeps none, whose batches are read as before.
    liveness: bool = False
    # The coordinator's --max-auth-failures: a worker applies the lower of it and its own, so the
    # broker can lower a site's breaker but never raise it (docs/sites.md#reliability).
    max_auth_failures: int | None = Field(default=None, ge=1)


class BatchResult(Frozen):
    """A worker's answer as it arrives: the envelope is checked here, each observation later."""

    site: str
    worker: str = Field(max_length=300)
    observations: list[Any] = Field(max_length=2 * MAX_BATCH)


class Heartbeat(Frozen):
    """A running batch's progress report (Celery state PROGRESS): who runs it and how far it is."""

    worker: str = Field(max_length=300)
    done: int = Field(ge=0)
    beat: int = Field(ge=0)
