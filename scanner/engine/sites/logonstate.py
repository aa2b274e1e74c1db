"""One lockout breaker per site account: the account's logon state of a scan, in the broker's Redis.

A site runs several workers, each holding the site's account (docs/sites.md#deploying-workers).
Every logon any of them sends counts against the same account on the domain controller, so they
share one `SharedLogon` (scanner/engine/logon.py) per (scan, site, account), kept in Redis beside
the batches (docs/sites.md#reliability):

- `natt-audit:logon:<scan>:<site>:<account>:rejected`, a set: the distinct hosts that rejected a
  worker's logon before that worker was proven (`(account logon)`: a failed pre-authentication);
- `...:notes`, a sorted set: the unproven logons in flight, `<holder> <host>` scored with the Unix
  time after which an outcome never recorded counts as a rejection: renewed while its worker
  lives, so `LEASE_SECONDS` after it died or lost Redis;
- `...:state`, a hash: `proven` once a host accepted a worker's logon, and `refused_reason` /
  `refused_message` once the account's Kerberos logon was refused (no other worker tries it);
- `...:lease`, a string: the probe lease, `SET NX PX` by the one worker that may log on unproven,
  renewed while held, lapsing `LEASE_SECONDS` after its holder died.

`<account>` is a digest of the account's bare, case-folded name (`DOMAIN\\user`, `user@REALM` and
`user` are one account: lockout counts per account, and sharing more is only more cautious), never
of a secret: the password-keyed credential fingerprint of scanner/inputs/credentials.py is for the
private journal, not for a broker many parties can read. Nothing here holds a password, a hash or
a ticket. Every key expires a day after its last write (`STATE_TTL`), so Redis never fills.

Redis errors make every call raise SharedLogonUnavailable, logged once per outage: the policy
then starts no unproven logon, and stops after its patience (fail safe, never unshared).
Only Redis commands every ACL that lets a worker use the broker allows: no Lua.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis
import redis.exceptions

from scanner.collect.wsman.kerberos import keytab_principal
from scanner.core.models import Credentials, HostError, Logon, Stage
from scanner.engine.logon import LEASE_SECONDS, SharedLogonUnavailable, SharedView
from scanner.engine.sites.broker import Broker

STATE_TTL = 24 * 3600  # seconds every key lives after its last write: a scan's state, never the estate's history
KEY_PREFIX = "natt-audit:logon"
SOCKET_TIMEOUT = 5.0  # seconds a Redis call may take before it counts as unavailable (fail safe)
MAX_MESSAGE = 500  # characters of a refused logon's message kept for the other workers

log = logging.getLogger("natt_audit.sites")

REDIS_ERRORS = (redis.exceptions.RedisError, OSError)  # what a Redis call raises when the broker fails


class _LeaseLost(Exception):
    """The lease is no longer this holder's (it lapsed and another worker took it)."""


def account_id(credentials: Credentials) -> str:
    """Return the key part naming the account: a digest of its bare, case-folded name, never of a secret."""
    name = credentials.username
    if not name and credentials.keytab is not None:
        name = keytab_principal(credentials.keytab) or ""  # the principal `login` will use
    bare = name.rsplit("\\", 1)[-1].split("@", 1)[0].casefold()
    return hashlib.sha256(b"natt-audit logon account\0" + bare.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def logon_client(broker: Broker) -> redis.Redis:
    """Return a Redis client of the broker (password and TLS as Celery's) with short timeouts."""
    password = broker.password.get_secret_value() if broker.password is not None else None
    client: redis.Redis = redis.Redis.from_url(
        broker.url,
        password=password,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        **(broker.ssl_options() or {}),
    )
    return client


class RedisLogon:
    """The SharedLogon of one (scan, site, account) in Redis, as one worker's engine sees it.

    A keeper thread renews, every third of `lease` seconds, the probe lease while this engine holds
    it and the notes of its logons in flight: when the worker dies, or loses Redis, both lapse
    within `lease` seconds, and its notes then count as rejections for everyone.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        scan: str,
        site: str,
        account: str,
        worker: str,
        lease: float = LEASE_SECONDS,
    ) -> None:
        self.client = client
        self.prefix = f"{KEY_PREFIX}:{scan}:{site}:{account}"
        # One holder per engine: the worker's name (no space in it) and a nonce, for `GET ...:lease`.
        self.holder = f"{worker.replace(' ', '_')}/{secrets.token_hex(4)}"
        self.lease = lease
        self._lock = threading.Lock()
        self._leased = False  # this engine means to hold the lease (the keeper renews it)
        self._held_until = 0.0  # monotonic time the lease lapses, as far as this engine knows
        self._notes: set[str] = set()  # this engine's notes in Redis, renewed by the keeper
        self._keeper: threading.Thread | None = None
        self._closed = threading.Event()
        self._down = False
        self._waited = False  # the wait for the lease was logged

    def key(self, name: str) -> str:
        """Return one of this state's keys (module docstring)."""
        return f"{self.prefix}:{name}"

    @contextlib.contextmanager
    def _redis(self) -> Iterator[None]:
        """Turn a Redis failure into SharedLogonUnavailable, logged once per outage."""
        try:
            yield
        except REDIS_ERRORS as exc:
            if not self._down:
                self._down = True
                log.warning(
                    "the shared logon state in the broker cannot be reached (%s): no logon is sent while"
                    " the account is unproven (docs/sites.md#reliability)",
                    type(exc).__name__,
                )
            raise SharedLogonUnavailable(type(exc).__name__) from None
        if self._down:
            self._down = False
            log.info("the shared logon state in the broker is reachable again")

    def view(self) -> SharedView:
        """Read the rejections, the notes of the other workers, proof and refusal in one round trip."""
        with self._redis():
            pipe = self.client.pipeline(transaction=False)
            pipe.smembers(self.key("rejected"))
            pipe.zrange(self.key("notes"), 0, -1, withscores=True)
            pipe.hgetall(self.key("state"))
            rejected, notes, state = pipe.execute()
        now = time.time()
        mine = self.holder.encode("utf-8") + b" "
        others = [deadline for member, deadline in notes if not member.startswith(mine)]
        refused = None
        if state.get(b"refused_reason"):
            refused = HostError(
                stage=Stage.AUTH,
                reason=_text(state[b"refused_reason"])[:64],
                message=_text(state.get(b"refused_message", b""))[:MAX_MESSAGE] or "the Kerberos logon was refused",
            )
        return SharedView(
            rejected=frozenset(_text(host) for host in rejected),
            lost=sum(1 for deadline in others if deadline < now),
            others=sum(1 for deadline in others if deadline >= now),
            proven=state.get(b"proven") == b"1",
            refused=refused,
        )

    def claim(self) -> bool:
        """Hold the lease: this engine's already, or taken now with SET NX PX (then kept renewed)."""
        with self._lock:
            if self._leased and time.monotonic() < self._held_until:
                return True
        began = time.monotonic()
        with self._redis():
            taken = self.client.set(self.key("lease"), self.holder, nx=True, px=self._lease_ms)
            if not taken:
                taken = self._renew()  # still ours (a renewal was late): keep it
        if taken:
            with self._lock:
                self._leased = True
                self._held(began)
            self._keep()
        elif not self._waited:
            self._waited = True
            log.info("another worker of the site is proving the account: waiting for the probe lease")
        return bool(taken)

    def release(self) -> None:
        """Stop renewing the lease and delete it if it is still this engine's."""
        with self._lock:
            self._leased = False
            self._held_until = 0.0

        def drop(pipe: Any) -> None:
            if pipe.get(self.key("lease")) == self.holder.encode("utf-8"):
                pipe.multi()
                pipe.delete(self.key("lease"))

        with self._redis():
            self.client.transaction(drop, self.key("lease"))

    def begin(self, host: str, within: float) -> bool:
        """Note the logon in the same transaction that checks the lease is still this engine's."""
        del within  # a note lives as long as its worker renews it, whatever the host's deadline
        member = f"{self.holder} {host}"

        def note(pipe: Any) -> None:
            if pipe.get(self.key("lease")) != self.holder.encode("utf-8"):
                raise _LeaseLost
            pipe.multi()
            pipe.zadd(self.key("notes"), {member: time.time() + self.lease})
            pipe.expire(self.key("notes"), STATE_TTL)

        try:
            with self._redis():
                self.client.transaction(note, self.key("lease"))
        except _LeaseLost:
            with self._lock:
                self._leased = False
                self._held_until = 0.0
            return False
        with self._lock:
            self._notes.add(member)
        self._keep()
        return True

    def finish(self, host: str, logon: Logon | None) -> None:
        """Drop the note and record a rejection or the proof, in one transaction."""
        member = f"{self.holder} {host}"
        with self._lock:
            # Not renewed any more, even if the write below fails: the note then lapses and counts
            # as a rejection for everyone (fail safe).
            self._notes.discard(member)
        with self._redis():
            pipe = self.client.pipeline(transaction=True)
            pipe.zrem(self.key("notes"), member)
            if logon is Logon.REJECTED:
                pipe.sadd(self.key("rejected"), host)
                pipe.expire(self.key("rejected"), STATE_TTL)
            elif logon is Logon.ACCEPTED:
                pipe.hset(self.key("state"), "proven", "1")
                pipe.expire(self.key("state"), STATE_TTL)
            pipe.execute()

    def refuse(self, error: HostError) -> None:
        """Keep the refused Kerberos logon's reason and message (our own text, no secret) for the others."""
        with self._redis():
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(
                self.key("state"),
                mapping={"refused_reason": error.reason, "refused_message": error.message[:MAX_MESSAGE]},
            )
            pipe.expire(self.key("state"), STATE_TTL)
            pipe.execute()

    def close(self) -> None:
        """Stop the keeper and release the lease if held; the state stays until it expires (others read it)."""
        self._closed.set()
        with contextlib.suppress(SharedLogonUnavailable):
            self.release()

    @property
    def _lease_ms(self) -> int:
        return max(1, int(self.lease * 1000))

    def _held(self, since: float) -> None:
        # Counted from before the call that took or renewed it, with a margin: never past Redis's own expiry.
        self._held_until = since + self.lease * 0.8

    def _renew(self) -> bool:
        """Extend the lease if it is still this engine's (WATCH/MULTI: no Lua needed)."""

        def extend(pipe: Any) -> None:
            if pipe.get(self.key("lease")) != self.holder.encode("utf-8"):
                raise _LeaseLost
            pipe.multi()
            pipe.pexpire(self.key("lease"), self._lease_ms)

        try:
            self.client.transaction(extend, self.key("lease"))
        except _LeaseLost:
            return False
        return True

    def _keep(self) -> None:
        """Start the keeper unless it runs."""
        with self._lock:
            if self._keeper is not None or self._closed.is_set():
                return
            self._keeper = threading.Thread(target=self._keep_loop, name="natt-logon-keeper", daemon=True)
            self._keeper.start()

    def _keep_loop(self) -> None:
        """Renew the lease and this engine's notes until neither is held, or the state is closed."""
        while not self._closed.wait(self.lease / 3):
            with self._lock:
                leased, notes = self._leased, list(self._notes)
                if not leased and not notes:
                    self._keeper = None
                    return
            began = time.monotonic()
            try:
                with self._redis():
                    kept = self._renew() if leased else False
                    if notes:
                        until = time.time() + self.lease
                        self.client.zadd(self.key("notes"), dict.fromkeys(notes, until), xx=True)
            except SharedLogonUnavailable:
                continue  # nothing extended: the engine stops logging on once its lease lapses
            with self._lock:
                if leased and self._leased:
                    if kept:
                        self._held(began)
                    else:
                        self._leased, self._held_until = False, 0.0  # lapsed and taken by another worker
        with self._lock:
            self._keeper = None


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def redis_logons(
    client: redis.Redis, *, site: str, credentials: Credentials, worker: str
) -> Callable[[str], RedisLogon]:
    """Return the factory of a worker's shared logon state: scan id -> RedisLogon of its account at its site."""
    account = account_id(credentials)

    def open_state(scan: str) -> RedisLogon:
        return RedisLogon(client, scan=scan, site=site, account=account, worker=worker)

    return open_state
