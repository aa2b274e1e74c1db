"""A site's worker: a Celery worker that reads its site's batches with the local collector.

`natt-audit worker --site NAME` (scanner/cli/worker.py) runs `run_worker`: one Celery worker
consuming the site's queue, with the site's own scan account loaded as `scan` loads it. Each batch
is read by `collect_all` (scanner/engine/pool.py), the thread pool of a local scan, so the
collector, its limits and the credential rules are the same on a worker as on one machine
(docs/sites.md#workers). The account never leaves the worker: batches carry hosts and limits, and
results carry observations.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from celery import Celery, Task
from celery.apps import worker as celery_worker
from celery.exceptions import Ignore, SecurityWarning
from celery.platforms import EX_FAILURE
from kombu.exceptions import KombuError
from pydantic import ValidationError

from scanner.collect.wsman.auth import AuthMaterial
from scanner.collect.wsman.kerberos import KerberosLoginError
from scanner.core.models import (
    DEFAULT_MAX_AUTH_FAILURES,
    CollectOptions,
    Credentials,
    HostError,
    Logon,
    Observation,
    Stage,
    Target,
)
from scanner.engine.logon import UNAVAILABLE_PATIENCE, LogonPolicy, SharedLogon
from scanner.engine.pool import collect_all
from scanner.engine.sites.app import DEFAULT_VISIBILITY_TIMEOUT, check_broker, make_app, result_reader
from scanner.engine.sites.broker import Broker
from scanner.engine.sites.liveness import coordinator_alive
from scanner.engine.sites.logonstate import logon_client, redis_logons
from scanner.engine.sites.messages import TASK_NAME, Batch, Heartbeat, queue_for

log = logging.getLogger("natt_audit.sites")


class BatchRefused(Exception):
    """A batch this worker will not run: not valid, or for another site. The task fails with it."""


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs besides the broker: its site, account, TLS trust and hosts in flight."""

    site: str
    credentials: Credentials
    concurrency: int
    ca_bundle: str | None = None
    verify_tls: bool = True
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT
    # Seconds the shared logon state may stay unreachable before the unproven hosts are given up.
    logon_patience: float = UNAVAILABLE_PATIENCE
    # This worker's breaker: a batch may lower it for its scan (Batch.max_auth_failures), never raise it.
    max_auth_failures: int = DEFAULT_MAX_AUTH_FAILURES


SHARED_POLL = 0.25  # seconds between two looks at the shared logon state while waiting for the lease


@dataclass
class _ScanLogon:
    """One scan's logon on this worker: one proven account, and the site's breaker for all its batches."""

    scan: str
    material: AuthMaterial
    logon: LogonPolicy
    refused: HostError | None = None  # the site account was refused: no host of this scan is tried


class _Logons:
    """The current scan's logon; a batch of another scan starts a new one (one TGT, one breaker).

    Without it every batch would prove the account again: with a wrong password, one failed
    Kerberos pre-authentication or up to `max_auth_failures` NTLM rejections per batch, enough to
    lock the account out on a large site (docs/authentication.md#lockout-safety). The breaker's
    state is the site's, shared with the other workers of the site through `states` (scan id ->
    the account's `SharedLogon` in the broker, scanner/engine/sites/logonstate.py).
    """

    def __init__(self, settings: WorkerSettings, states: Callable[[str], SharedLogon]) -> None:
        self.settings = settings
        self.states = states
        self.current: _ScanLogon | None = None
        self.lock = threading.Lock()

    def for_scan(self, scan: str, max_auth_failures: int | None = None) -> _ScanLogon:
        with self.lock:
            if self.current is None or self.current.scan != scan:
                self.close()
                shared = self.states(scan)
                limit = self.settings.max_auth_failures
                policy = LogonPolicy(
                    concurrency=max(1, self.settings.concurrency),
                    max_auth_failures=min(limit, max_auth_failures) if max_auth_failures is not None else limit,
                    shared=shared,
                    poll=SHARED_POLL,
                    patience=self.settings.logon_patience,
                )
                self.current = _ScanLogon(scan, AuthMaterial(self.settings.credentials), policy)
            return self.current

    def close(self) -> None:
        """Destroy the current scan's ticket and give its probe lease back."""
        if self.current is not None:
            self.current.material.close()
            self.current.logon.release()


def worker_name(site: str) -> str:
    """Return this worker's Celery node name: site@host.pid, unique on the machine."""
    return f"{site}@{socket.gethostname()}.{os.getpid()}"


def register_task(app: Celery, settings: WorkerSettings, broker: Broker) -> None:
    """Register the batch task on `app`, bound to this worker's settings, account and shared logon state."""
    client = logon_client(broker)
    name = worker_name(settings.site)
    states = redis_logons(client, site=settings.site, credentials=settings.credentials, worker=name)
    logons = _Logons(settings, states)

    @app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def collect_batch(task: Task, payload: Any) -> dict[str, Any]:
        return run_batch(task, payload, settings, logons, alive=lambda run: coordinator_alive(client, run))


def run_batch(
    task: Task,
    payload: Any,
    settings: WorkerSettings,
    logons: _Logons,
    *,
    alive: Callable[[str], bool | None] | None = None,
) -> dict[str, Any]:
    """Read one batch's hosts with the local engine; return the observations as JSON values.

    `alive` tells whether a run's coordinator still keeps its sign of life (None: cannot tell);
    a batch whose coordinator is gone is marked revoked and not read (scanner/engine/sites/liveness.py).
    """
    try:
        batch = Batch.model_validate(payload)
    except ValidationError:
        # Only the count: the payload is the sender's text, not ours to echo.
        raise BatchRefused("the batch is not valid") from None
    if batch.site != settings.site:
        raise BatchRefused(f"the batch is for site {batch.site}, this worker serves {settings.site}")
    options = CollectOptions(
        host_timeout=batch.limits.host_timeout,
        connect_timeout=min(batch.limits.connect_timeout, batch.limits.host_timeout),
        operation_timeout=batch.limits.operation_timeout,
        max_response_bytes=batch.limits.max_response_bytes,
        ca_bundle=settings.ca_bundle,
        verify_tls=settings.verify_tls,
    )
    task_id = str(task.request.id)
    hostname = str(task.request.hostname or worker_name(settings.site))

    def coordinator_gone() -> bool:
        return batch.liveness and alive is not None and alive(batch.scan) is False

    if coordinator_gone():
        log.warning(
            "site %s: a batch of %d hosts of scan %s is not read: its coordinator is gone (no sign of life "
            "in the broker)",
            settings.site,
            len(batch.targets),
            batch.scan,
        )
        # REVOKED, as if the coordinator had revoked it: one that is alive after all sends it again.
        task.backend.mark_as_revoked(task_id, reason="coordinator gone")
        raise Ignore()
    stop = threading.Event()
    done = 0
    lock = threading.Lock()

    def beat_loop() -> None:
        beat = 0
        while True:
            with lock:
                report = Heartbeat(worker=hostname, done=done, beat=beat)
            try:
                task.backend.store_result(task_id, report.model_dump(mode="json"), "PROGRESS")
            except (redis.exceptions.RedisError, KombuError, OSError) as exc:
                # A lost heartbeat must not stop the batch; the coordinator waits --site-timeout.
                log.warning("cannot report progress to the broker (%s)", type(exc).__name__)
            beat += 1
            if finished.wait(batch.heartbeat):
                return
            if batch.not_after is not None and time.time() >= batch.not_after:
                stop.set()  # the scan's --deadline: start no new host
            if not stop.is_set() and coordinator_gone():
                log.warning(
                    "site %s: the coordinator of scan %s is gone: no new host of this batch is started",
                    settings.site,
                    batch.scan,
                )
                stop.set()

    def count(_: Observation) -> None:
        nonlocal done
        with lock:
            done += 1

    if batch.not_after is not None and time.time() >= batch.not_after:
        stop.set()
    finished = threading.Event()
    beats = threading.Thread(target=beat_loop, name="natt-heartbeat", daemon=True)
    beats.start()
    started = time.perf_counter()
    state = logons.for_scan(batch.scan, batch.max_auth_failures)
    try:
        if state.refused is not None:
            observations = [Observation(target=target, error=state.refused) for target in batch.targets]
        else:
            # A batch delivered again (its worker died) holds hosts that may have rejected the account
            # already: each is tried once per scan, as the breaker counts it once.
            earlier = state.logon.rejected_hosts() if not state.logon.proven else frozenset()
            again = [target for target in batch.targets if target.name in earlier]
            todo = [target for target in batch.targets if target.name not in earlier]
            if again:
                log.warning(
                    "site %s: %d hosts of this batch rejected the logon earlier in scan %s: not tried again",
                    settings.site,
                    len(again),
                    batch.scan,
                )
            observations = [_rejected_earlier(target) for target in again]
            if todo:  # nothing to prove or read when every host is such a one
                observations += collect_all(
                    todo,
                    settings.credentials,
                    options,
                    concurrency=settings.concurrency,
                    on_result=count,
                    stop=stop,
                    keep=True,
                    material=state.material,
                    logon=state.logon,
                )
    except KerberosLoginError as exc:
        # The site account's TGT was refused: one failed logon, then no host of this scan is tried.
        log.error("site %s: %s; no host of scan %s is tried", settings.site, exc, batch.scan)
        state.refused = HostError(stage=Stage.AUTH, reason=exc.reason, message=f"site {settings.site}: {exc}")
        observations = [Observation(target=target, error=state.refused) for target in batch.targets]
    finally:
        finished.set()
        beats.join(5)
    log.info(
        "site %s: batch of %d hosts read in %.1f s (%d unread)",
        settings.site,
        len(batch.targets),
        time.perf_counter() - started,
        sum(1 for o in observations if o.error is not None),
    )
    return {
        "site": settings.site,
        "worker": hostname,
        "observations": [observation.model_dump(mode="json") for observation in observations],
    }


def _rejected_earlier(target: Target) -> Observation:
    """Return the observation of a host that rejected this scan's logon before: as then, without a logon."""
    error = HostError(
        stage=Stage.AUTH,
        reason="unauthorized",
        message="rejected the scan account's logon earlier in this scan (its batch was delivered again): "
        "not tried twice",
    )
    return Observation(target=target, error=error, logon=Logon.REJECTED)


class _Forward(logging.Handler):
    """Hand Celery's and kombu's records to natt-audit's one stderr path (scanner/core/logsetup.py)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger("natt_audit.celery").handle(record)


def _route_library_logs(verbose: bool) -> None:
    for name in ("celery", "kombu"):
        logger = logging.getLogger(name)
        logger.handlers = [_Forward()]
        logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
        logger.propagate = False


def run_worker(broker: Broker, settings: WorkerSettings, *, verbose: bool = False) -> int:
    """Serve the site's queue until SIGTERM/SIGINT (a warm shutdown finishes the running batch)."""
    app = make_app(broker, visibility_timeout=settings.visibility_timeout, results=True)
    check_broker(result_reader(app, broker), broker)  # BrokerError (exit 2) before the worker starts
    register_task(app, settings, broker)
    _route_library_logs(verbose)
    name = worker_name(settings.site)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Celery says the same in a multi-line warning of its own; one line through our logger instead.
        warnings.filterwarnings("ignore", category=SecurityWarning)
        log.warning("the worker runs as root: run it as a dedicated user (docs/sites.md#deploying-workers)")
    log.info(
        "worker %s: serving site %s from %s with up to %d hosts in flight",
        name,
        settings.site,
        broker.url,
        settings.concurrency,
    )
    worker = _quiet(app.Worker)(
        hostname=name,
        queues=[queue_for(settings.site)],
        pool="threads",
        concurrency=1,  # one batch at a time; its hosts run on collect_all's own threads
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        loglevel="DEBUG" if verbose else "WARNING",
        quiet=True,
        optimization="fair",
    )
    worker.start()
    code = int(worker.exitcode or 0)
    log.info("worker %s: stopped (exit %d)", name, code)
    return code


def _quiet(base: Any) -> Any:
    """Return Celery's worker class with its shutdown signal handlers silent on stdout.

    Celery's handlers print "worker: Warm shutdown (MainProcess)" and the Ctrl-C hint to stdout;
    stdout carries no logs in natt-audit (README, output streams), and printing from a signal
    handler is what Celery itself guards. The same handlers are installed again with
    `verbose=False` and a SIGINT callback that arms the cold shutdown without the hint; the worker
    says it stopped through the logger once `start()` returns (run_worker).
    """

    class QuietWorker(base):  # type: ignore[misc]
        def install_platform_tweaks(self, worker: Any) -> None:
            super().install_platform_tweaks(worker)

            def second_ctrl_c_is_cold(w: Any) -> None:
                celery_worker.install_worker_term_hard_handler(w, sig="SIGINT", verbose=False)

            # celery/apps/worker.py: the same signals, exit codes and callbacks, minus the prints.
            shutdown = celery_worker._shutdown_handler  # private: its `verbose` flag is not public
            shutdown(worker, sig="SIGTERM", how="Warm", verbose=False)
            celery_worker.install_worker_term_hard_handler(worker, verbose=False)
            shutdown(worker, sig="SIGINT", callback=second_ctrl_c_is_cold, exitcode=EX_FAILURE, verbose=False)

    return QuietWorker
