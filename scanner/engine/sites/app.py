"""The Celery application of the sites engine: JSON-only messages, late acks, Redis broker and results.

One factory for both ends (docs/sites.md#architecture): the coordinator sends batches by task name
and reads their results from the Redis result backend; a worker (scanner/engine/sites/worker.py)
registers the task and consumes its site's queue. Pickle is never accepted anywhere: a message in
any other content type is refused by kombu before it is decoded (docs/sites.md#security-model).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import redis.exceptions
from celery import Celery
from celery.backends.redis import RedisBackend

from scanner.engine.sites.broker import Broker, BrokerError
from scanner.engine.sites.messages import site_of_queue

# A batch whose worker died is handed out again once it has been unacknowledged this long
# (kombu's Redis visibility timeout, docs/sites.md#reliability): longer than a batch can take.
DEFAULT_VISIBILITY_TIMEOUT = 600.0
RESULT_EXPIRES = 3600  # seconds a batch's result stays in Redis unread (the coordinator deletes what it reads)

log = logging.getLogger("natt_audit.sites")


def make_app(broker: Broker, *, visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT, results: bool) -> Celery:
    """Return a Celery app for `broker`; with `results` it stores task results (the worker's side)."""
    app = Celery("natt_audit", set_as_current=False)
    password = broker.password.get_secret_value() if broker.password is not None else None
    transport: dict[str, Any] = {
        "visibility_timeout": visibility_timeout,
        # Look for unacknowledged batches to hand out again every few seconds, not every ~100 s
        # (kombu's default interval x throttle), so a killed worker's batch is not left waiting.
        "unacked_restore_interval": min(10.0, max(1.0, visibility_timeout / 4)),
        "unacked_restore_throttle": 1,
    }
    app.conf.update(
        broker_url=broker.url,
        broker_password=password,  # kept out of the URL, so no banner or repr can show it
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=3,
        broker_use_ssl=broker.ssl_options(),
        # Results: the worker stores each batch's result and progress in Redis; the coordinator
        # reads them with its own backend object (coordinator.py), not through this app.
        result_backend=broker.url if results else None,
        redis_password=password,
        redis_backend_use_ssl=broker.ssl_options(),
        result_expires=RESULT_EXPIRES,
        result_extended=False,
        # JSON only, both ways (docs/sites.md#security-model).
        accept_content=["json"],
        result_accept_content=["json"],
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        # A batch is acknowledged only when done: a worker killed mid-batch leaves it to be handed out again.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=False,  # the worker's first heartbeat says it started (worker.py)
        task_send_sent_event=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_create_missing_queues=True,
    )
    return app


def result_reader(app: Celery, broker: Broker) -> RedisBackend:
    """Return a Redis result backend for reading and deleting batch results (the coordinator's)."""
    return RedisBackend(app=app, url=broker.url)


def live_workers(app: Celery, *, timeout: float = 2.0) -> dict[str, list[str]]:
    """Return the workers that answer now, by site: site -> sorted worker names."""
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    sites: dict[str, list[str]] = defaultdict(list)
    for worker, queues in replies.items():
        for queue in queues if isinstance(queues, list) else []:
            name = queue.get("name") if isinstance(queue, dict) else None
            site = site_of_queue(name) if isinstance(name, str) else None
            if site is not None:
                sites[site].append(str(worker))
    return {site: sorted(names) for site, names in sorted(sites.items())}


def check_broker(reader: RedisBackend, broker: Broker) -> None:
    """Log on to the broker once; BrokerError (exit 2) when it is unreachable or refuses the password."""
    try:
        reader.client.ping()
    except redis.exceptions.AuthenticationError:
        raise BrokerError(
            f"the broker {broker.url} refused the password (NATT_AUDIT_BROKER_PASSWORD or "
            "--broker-password-file): nothing was queued"
        ) from None
    except redis.exceptions.ResponseError as exc:
        # NOAUTH, or an ACL refusing PING: either way this account cannot use the broker.
        raise BrokerError(
            f"the broker {broker.url} refused this client ({type(exc).__name__}): nothing was queued"
        ) from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        why = type(exc).__name__
        if "CERTIFICATE" in str(exc).upper():
            why += ": its TLS certificate is not trusted (--broker-ca-bundle)"
        raise BrokerError(f"cannot reach the broker {broker.url} ({why}): nothing was queued") from None
