"""The coordinator's sign of life in the broker: no worker reads a host for a coordinator that is gone.

A coordinator killed with SIGKILL (or whose machine died) cannot revoke its queued batches, and
Redis keeps them: without a sign of life the site's workers would read every host of them, spending
the site account's logons for a report nobody will write. So the coordinator keeps one key while
its collection runs (docs/sites.md#reliability):

- `natt-audit:run:<run id>:alive`, a string, set with a time to live of `liveness_ttl` (the site
  timeout, within 10-120 s) and renewed every quarter of it; deleted when the collection ends.

A worker checks it before a batch (a batch of a run whose key is gone is marked revoked and not
read) and at each heartbeat while it reads one (then it starts no new host). A key it cannot read
(Redis unreachable) is no evidence: the batch goes on, and its results wait in Redis as any
result does. The key holds nothing but "1".
"""

from __future__ import annotations

import time

import redis

from scanner.engine.sites.logonstate import REDIS_ERRORS

KEY_PREFIX = "natt-audit:run"
MIN_TTL = 10.0
MAX_TTL = 120.0

def alive_key(run_id: str) -> str:
    """Return the key a coordinator keeps while its run `run_id` collects."""
    return f"{KEY_PREFIX}:{run_id}:alive"


def liveness_ttl(site_timeout: float) -> float:
    """Return how long the key lives unrenewed: a coordinator silent that long is gone."""
    return max(MIN_TTL, min(MAX_TTL, site_timeout))


class Beacon:
    """The coordinator's side: keep the run's key alive while it collects, delete it at the end."""

    def __init__(self, client: redis.Redis, run_id: str, ttl: float) -> None:
        self.client = client
        self.key = alive_key(run_id)
        self.ttl = ttl
        self.renewed = -float("inf")

    def beat(self) -> None:
        """Set the key again when a quarter of its time to live has passed (raises Redis errors)."""
        now = time.monotonic()
        if now - self.renewed >= self.ttl / 4:
            self.client.set(self.key, b"1", px=int(self.ttl * 1000))
            self.renewed = now

    def end(self) -> None:
        """Delete the key: the run collects no more (raises Redis errors)."""
        self.client.delete(self.key)


def coordinator_alive(client: redis.Redis, run_id: str) -> bool | None:
    """Return whether the run's coordinator is alive, or None when Redis cannot tell now."""
    try:
        return bool(client.exists(alive_key(run_id)))
    except REDIS_ERRORS:
        return None
