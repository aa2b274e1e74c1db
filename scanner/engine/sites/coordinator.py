"""The coordinator: send each site's hosts to its workers in batches, stream back validated observations.

`SiteCollector` is the sites engine's `Collector` (scanner/engine/collector.py): `run_scan` gives
it the hosts and receives one observation per host, as from the local thread pool, so evaluation,
waivers, the journal, history, drift, the report and exports are the local scan's own code
(docs/sites.md#architecture). Per site it keeps a few batches queued (a window that grows with
the workers it sees), polls their results in the Redis result backend, and:

- validates every result on receipt: the envelope (`BatchResult`), then each observation alone
  (`Observation`), and keeps its own `Target` for the host, so a malformed or hostile result
  costs the hosts it spoils (`site/bad_result`), never the scan;
- records each host once per scan, however often its batch is delivered (acks_late redelivery,
  a slow worker and its replacement both answering);
- reports a site whose workers show no sign of life for `site_timeout` seconds as
  `site/no_collector` for its unfinished hosts, revokes its batches and purges its queue;
- on `stop` (SIGTERM, --deadline) sends nothing more, revokes what is queued and waits for running
  batches until the grace period ends;
- keeps a sign of life in Redis while it runs (scanner/engine/sites/liveness.py), so that if it is
  killed outright its queued batches are read by no worker.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import redis.exceptions
from celery.backends.redis import RedisBackend
from kombu.exceptions import KombuError
from pydantic import ValidationError

from scanner.core.logsetup import fields
from scanner.core.models import CollectOptions, HostError, Observation, Stage, Target
from scanner.engine.sites.app import check_broker, make_app, result_reader
from scanner.engine.sites.broker import Broker
from scanner.engine.sites.liveness import Beacon, liveness_ttl
from scanner.engine.sites.messages import (
    BATCH_SIZE,
    TASK_NAME,
    Batch,
    BatchResult,
    Heartbeat,
    Limits,
    queue_for,
)

log = logging.getLogger("natt_audit.sites")

# A batch result is ~1 KB per host; a host's reply is capped at 1 MiB (CollectOptions), so a result
# bigger than this is not a worker's answer: it is refused unread (docs/sites.md#security-model).
MAX_RESULT_BYTES = 64 * 1024 * 1024
POLL_INTERVAL = 0.2  # seconds between two reads of the outstanding batches' states
MAX_SENDS = 3  # a batch that expires or is revoked by someone else is sent again at most this often
_BROKER_ERRORS = (redis.exceptions.RedisError, KombuError, OSError)
_DECODE_ERRORS = (KombuError, ValueError, TypeError, RecursionError)


def heartbeat_for(site_timeout: float) -> float:
    """Return how often a running batch reports progress: well within the site timeout."""
    return min(30.0, max(0.5, site_timeout / 4))


@dataclass
class _Sent:
    site: str
    targets: tuple[Target, ...]
    sends: int
    last: bytes | None = None  # the state last read, to tell a new heartbeat from the same one


@dataclass
class _Site:
    last_life: float
    workers: set[str] = field(default_factory=set)
    given_up: bool = False

    def window(self) -> int:
        # Two batches per worker seen keeps each busy while its next batch waits; one more
        # lets a worker that has not reported yet start at once.
        return 2 * max(1, len(self.workers)) + 1


@dataclass
class Stats:
    """What the engine did, for -v and the benchmark (docs/sites.md#sizing)."""

    tasks_sent: int = 0
    results: int = 0
    heartbeats: int = 0
    bad_results: int = 0
    duplicates: int = 0
    revoked: int = 0
    polls: int = 0
    cpu_seconds: float = 0.0  # the engine's own work: sending, polling, decoding, validating
    sink_cpu_seconds: float = 0.0  # spent in on_result (evaluation, journal, report), not the engine's


class SiteCollector:
    """The sites engine's collector: batches to site queues out, validated observations back."""

    def __init__(
        self,
        broker: Broker,
        options: CollectOptions,
        *,
        site_timeout: float = 120.0,
        grace: float = 10.0,
        deadline: float | None = None,
        batch_size: int = BATCH_SIZE,
        poll_interval: float = POLL_INTERVAL,
        max_auth_failures: int | None = None,
    ) -> None:
        self.broker = broker
        self.limits = Limits.of(options)
        self.site_timeout = site_timeout
        self.grace = grace
        self.deadline = deadline
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_auth_failures = max_auth_failures
        self.app = make_app(broker, results=False)
        self.reader: RedisBackend = result_reader(self.app, broker)
        self.stats = Stats()

    def check(self) -> None:
        """Log on to the broker now: BrokerError (exit 2) before anything is queued."""
        check_broker(self.reader, self.broker)

    def collect(
        self, targets: Sequence[Target], *, on_result: Callable[[Observation], None], stop: threading.Event
    ) -> None:
        """Send every target to its site's workers; hand each host's observation to `on_result` once."""
        started = time.thread_time()
        try:
            _Run(self, targets, on_result, stop).run()
        finally:
            self.stats.cpu_seconds += time.thread_time() - started - self.stats.sink_cpu_seconds
            log.debug(
                "sites engine: %d batches sent, %d results (%d refused), %d heartbeats, %d duplicate "
                "hosts dropped, %d revoked, %d polls, %.1f ms CPU",
                self.stats.tasks_sent,
                self.stats.results,
                self.stats.bad_results,
                self.stats.heartbeats,
                self.stats.duplicates,
                self.stats.revoked,
                self.stats.polls,
                self.stats.cpu_seconds * 1000,
                extra=fields(sites_engine=vars(self.stats)),
            )


class _Run:
    """One collection: the state of every site, batch and host while the scan runs."""

    def __init__(
        self,
        engine: SiteCollector,
        targets: Sequence[Target],
        on_result: Callable[[Observation], None],
        stop: threading.Event,
    ) -> None:
        self.engine = engine
        self.on_result = on_result
        self.stop = stop
        self.run_id = str(uuid.uuid4())
        self.pending: dict[str, deque[tuple[Target, ...]]] = {}
        by_site: dict[str, list[Target]] = {}
        for target in targets:
            by_site.setdefault(target.site, []).append(target)
        size = engine.batch_size
        for site, hosts in by_site.items():
            self.pending[site] = deque(tuple(hosts[i : i + size]) for i in range(0, len(hosts), size))
        now = time.monotonic()
        self.sites = {site: _Site(last_life=now) for site in self.pending}
        self.outstanding: dict[str, _Sent] = {}
        self.revoked: set[str] = set()
        self.done: set[str] = set()
        self.not_after = time.time() + engine.deadline if engine.deadline is not None else None
        self.broker_down_since: float | None = None
        self.beacon = Beacon(engine.reader.client, self.run_id, liveness_ttl(engine.site_timeout))

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        stopped_at: float | None = None
        try:
            while True:
                now = time.monotonic()
                if self.stop.is_set() and stopped_at is None:
                    stopped_at = now
                    self._cancel_queued()
                self._guard(self.beacon.beat)  # before the first batch is sent, then every ttl/4
                if stopped_at is None:
                    self._guard(self._fill_windows)
                if not self.outstanding and (stopped_at is not None or not any(self.pending.values())):
                    return
                if stopped_at is not None and now - stopped_at >= self.engine.grace:
                    return
                self._guard(self._poll)
                if stopped_at is None:
                    self._check_sites(time.monotonic())
                time.sleep(self.engine.poll_interval)
        finally:
            if self.outstanding:
                self._guard(lambda: self._revoke(list(self.outstanding)))
            self._guard(self.beacon.end)  # a batch still queued somewhere is now read by no worker

    def _guard(self, step: Callable[[], None]) -> None:
        """Run one step; a broker outage is logged once and waited out (sites time out meanwhile)."""
        try:
            step()
        except _BROKER_ERRORS as exc:
            if self.broker_down_since is None:
                self.broker_down_since = time.monotonic()
                log.warning(
                    "lost the broker %s (%s); retrying, sites that stay silent for %g s end as site/no_collector",
                    self.engine.broker.url,
                    type(exc).__name__,
                    self.engine.site_timeout,
                )
            return
        if self.broker_down_since is not None:
            log.info("the broker %s answers again", self.engine.broker.url)
            self.broker_down_since = None

    # -- sending ----------------------------------------------------------------------------------

    def _fill_windows(self) -> None:
        counts: dict[str, int] = {}
        for sent in self.outstanding.values():
            counts[sent.site] = counts.get(sent.site, 0) + 1
        for site, queue in self.pending.items():
            state = self.sites[site]
            while queue and counts.get(site, 0) < state.window():
                self._send(site, queue[0], sends=1)
                queue.popleft()  # only once sent: a broker error leaves the batch pending
                counts[site] = counts.get(site, 0) + 1

    def _send(self, site: str, targets: tuple[Target, ...], *, sends: int) -> None:
        batch = Batch(
            scan=self.run_id,
            site=site,
            targets=targets,
            limits=self.engine.limits,
            heartbeat=heartbeat_for(self.engine.site_timeout),
            not_after=self.not_after,
            liveness=True,
            max_auth_failures=self.engine.max_auth_failures,
        )
        task_id = str(uuid.uuid4())
        self.engine.app.send_task(
            TASK_NAME, args=[batch.model_dump(mode="json")], queue=queue_for(site), task_id=task_id
        )
        self.outstanding[task_id] = _Sent(site=site, targets=targets, sends=sends)
        self.engine.stats.tasks_sent += 1

    def _revoke(self, task_ids: list[str]) -> None:
        if not task_ids:
            return
        self.revoked.update(task_ids)
        # One broadcast for all: live workers drop the queued ones; a running batch finishes.
        self.engine.app.control.revoke(task_ids)
        self.engine.stats.revoked += len(task_ids)

    def _cancel_queued(self) -> None:
        """Stop: send nothing more and revoke what was sent; running batches may still answer."""
        unsent = sum(len(queue) for queue in self.pending.values())
        for queue in self.pending.values():
            queue.clear()
        sent = [t for t in self.outstanding if t not in self.revoked]
        self._guard(lambda: self._revoke(sent))
        log.info(
            "stopping: %d batches revoked, %d never sent; running batches may answer for %g s (--grace)",
            len(sent),
            unsent,
            self.engine.grace,
            extra=fields(revoked=len(sent), unsent=unsent),
        )

    # -- receiving --------------------------------------------------------------------------------

    def _poll(self) -> None:
        task_ids = list(self.outstanding)
        if not task_ids:
            return
        reader = self.engine.reader
        pipe = reader.client.pipeline(transaction=False)
        for task_id in task_ids:
            # GETRANGE reads at most MAX_RESULT_BYTES + 1: an oversized result is never pulled whole.
            pipe.getrange(reader.get_key_for_task(task_id), 0, MAX_RESULT_BYTES)
        values = pipe.execute()
        self.engine.stats.polls += 1
        for task_id, raw in zip(task_ids, values, strict=True):
            if raw and task_id in self.outstanding:
                self._on_state(task_id, bytes(raw))

    def _on_state(self, task_id: str, raw: bytes) -> None:
        sent = self.outstanding[task_id]
        if raw == sent.last:
            return
        sent.last = raw
        if len(raw) > MAX_RESULT_BYTES:
            self._refuse(task_id, f"its result is larger than {MAX_RESULT_BYTES} bytes")
            return
        try:
            # decode() only deserialises (JSON, accept_content); decode_result() would also rebuild
            # exceptions named by the worker, importing modules it names: never on a worker's word.
            meta = self.engine.reader.decode(raw)
        except _DECODE_ERRORS:
            self._refuse(task_id, "its result is not JSON")
            return
        status = meta.get("status") if isinstance(meta, dict) else None
        if status == "PROGRESS":
            self._on_heartbeat(sent, meta.get("result"))
        elif status == "SUCCESS":
            self._on_result(task_id, meta.get("result"))
        elif status == "FAILURE":
            self._refuse(task_id, "the site worker failed the batch")
        elif status == "REVOKED":
            self._on_revoked(task_id)
        elif status in ("STARTED", "RETRY", "RECEIVED"):
            self._alive(sent.site)
        else:
            self._refuse(task_id, "its result has no known state")

    def _alive(self, site: str, worker: str | None = None) -> None:
        state = self.sites[site]
        state.last_life = time.monotonic()
        if worker is not None:
            state.workers.add(worker)

    def _on_heartbeat(self, sent: _Sent, payload: object) -> None:
        try:
            beat = Heartbeat.model_validate(payload)
        except ValidationError:
            return  # not a sign of life: a worker that cannot report progress is not counted as one
        self.engine.stats.heartbeats += 1
        self._alive(sent.site, beat.worker)

    def _on_revoked(self, task_id: str) -> None:
        sent = self.outstanding.pop(task_id)
        self._forget(task_id)
        if task_id in self.revoked or self.stop.is_set():
            return
        # Expired or revoked by someone else: the hosts still need reading.
        if sent.sends < MAX_SENDS:
            self._guard(lambda: self._send(sent.site, sent.targets, sends=sent.sends + 1))
        else:
            self._deliver_errors(
                sent.targets, _error("bad_result", f"site {sent.site}: the batch was revoked {sent.sends} times")
            )

    def _on_result(self, task_id: str, payload: object) -> None:
        sent = self.outstanding.pop(task_id)
        self._forget(task_id)
        self.engine.stats.results += 1
        try:
            envelope = BatchResult.model_validate(payload)
        except ValidationError:
            self._spoiled(sent, "its result is not a batch result")
            return
        if envelope.site != sent.site:
            self._spoiled(sent, "its result names another site")
            return
        self._alive(sent.site, envelope.worker)
        ours = {target.name: target for target in sent.targets}
        answered: set[str] = set()
        refused = 0
        for item in envelope.observations:
            try:
                observation = Observation.model_validate(item)
            except ValidationError:
                refused += 1
                continue
            target = ours.get(observation.target.name)
            if target is None or target.name in answered:
                refused += 1  # a host not in this batch, or twice: neither is taken
                continue
            answered.add(target.name)
            # The coordinator's own Target: a worker can report facts, not rewrite the inventory.
            self._deliver(observation.model_copy(update={"target": target}))
        missing = [target for target in sent.targets if target.name not in answered]
        if refused or missing:
            self.engine.stats.bad_results += 1
            log.warning(
                "site %s: %d entries of a batch result were refused; %d hosts get site/bad_result",
                sent.site,
                refused,
                len(missing),
                extra=fields(site=sent.site, refused=refused, hosts=len(missing)),
            )
            self._deliver_errors(
                missing,
                _error("bad_result", f"site {sent.site}: the worker's result for this host was malformed or missing"),
            )

    def _refuse(self, task_id: str, why: str) -> None:
        sent = self.outstanding.pop(task_id)
        self._forget(task_id)
        self.engine.stats.results += 1
        self._spoiled(sent, why)

    def _spoiled(self, sent: _Sent, why: str) -> None:
        self.engine.stats.bad_results += 1
        log.warning(
            "site %s: a batch of %d hosts was refused: %s",
            sent.site,
            len(sent.targets),
            why,
            extra=fields(site=sent.site),
        )
        self._deliver_errors(sent.targets, _error("bad_result", f"site {sent.site}: {why}"))

    def _forget(self, task_id: str) -> None:
        # Read once, then deleted: Redis holds only the results not read yet.
        self._guard(lambda: self.engine.reader.client.delete(self.engine.reader.get_key_for_task(task_id)))

    # -- sites without collectors ------------------------------------------------------------------

    def _check_sites(self, now: float) -> None:
        busy = {sent.site for sent in self.outstanding.values()} | {s for s, q in self.pending.items() if q}
        for site in busy:
            state = self.sites[site]
            if not state.given_up and now - state.last_life >= self.engine.site_timeout:
                self._give_up(site)

    def _give_up(self, site: str) -> None:
        state = self.sites[site]
        state.given_up = True
        mine = [task_id for task_id, sent in self.outstanding.items() if sent.site == site]
        hosts = [target for task_id in mine for target in self.outstanding[task_id].targets]
        hosts += [target for batch in self.pending[site] for target in batch]
        self.pending[site].clear()
        for task_id in mine:
            del self.outstanding[task_id]
        log.warning(
            "site %s: no worker took or reported on its batches for %g s (--site-timeout): %d hosts are "
            "site/no_collector",
            site,
            self.engine.site_timeout,
            len([t for t in hosts if t.name not in self.done]),
            extra=fields(site=site, hosts=len(hosts)),
        )
        self._guard(lambda: self._revoke(mine))
        # Nothing consumes the site's queue: empty it, so a worker started tomorrow does not run
        # tonight's batches (revokes reach only the workers alive now).
        self._guard(lambda: self._purge(site))
        self._deliver_errors(
            hosts,
            _error(
                "no_collector",
                f"no worker of site {site} took or reported on a batch for {self.engine.site_timeout:g} s",
            ),
        )

    def _purge(self, site: str) -> None:
        with self.engine.app.connection_for_write() as connection:
            connection.default_channel.queue_purge(queue_for(site))

    # -- delivery ---------------------------------------------------------------------------------

    def _deliver(self, observation: Observation) -> None:
        name = observation.target.name
        if name in self.done:
            self.engine.stats.duplicates += 1
            return
        self.done.add(name)
        began = time.thread_time()
        try:
            self.on_result(observation)
        finally:
            self.engine.stats.sink_cpu_seconds += time.thread_time() - began

    def _deliver_errors(self, targets: Iterable[Target], error: HostError) -> None:
        for target in targets:
            self._deliver(Observation(target=target, error=error))


def _error(reason: str, message: str) -> HostError:
    return HostError(stage=Stage.SITE, reason=reason, message=message)
