"""Lockout safety for any engine's fan-out: prove the credentials on one host, stop after K rejections.

A scan sends the same account to every host, and every rejected logon counts against the account's
lockout threshold on the domain controller. `LogonPolicy` is the small state machine an engine
consults before starting each host and tells about each finished one (docs/authentication.md,
"Lockout safety"):

- **probing**: one host in flight until a host accepts the logon. A host that tells nothing about
  the credentials (refused, timed out, a fault before any credential was sent) is no evidence
  either way; after `serial_probes` such hosts in a row the width grows to the *safe width*,
  `max_auth_failures - rejections`, so that even if every host in flight rejected the logon the
  account would see at most `max_auth_failures` failures.
- **proven**: a host accepted the logon; the width is the scan's concurrency. A rejection from
  now on is a per-host authorisation problem (the account lacks rights there): it never trips
  the breaker.
- **tripped**: `max_auth_failures` distinct hosts rejected the logon and none accepted it. No
  further host is started; every host not started gets `auth/not_attempted` (`not_attempted`).

Several engines may spend one account in the same scan: the workers of a site
(docs/sites.md#reliability). They share the account's rejections through a `SharedLogon`, and
while an engine is not proven it may log on (start a host, or make the Kerberos AS exchange) only
while it holds the shared *probe lease*; its width then counts the rejections and the unproven
logons in flight of every engine, so that across all of them at most `max_auth_failures` hosts
can reject the account before the breaker trips. "Proven" stays each engine's own: a host accepted
*its* password, since another engine's success says nothing of a stale password file here. A
local scan is one engine with a `MemoryLogon` of its own, where the lease is always free.

The policy holds no lock: the engine serialises `admit`, `begin` and `record`
(scanner/engine/pool.py). It reads only `Observation.logon`, which survives JSON.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from scanner.collect.wsman.kerberos import KerberosLoginError
from scanner.core.models import DEFAULT_MAX_AUTH_FAILURES, HostError, Logon, Observation, Stage, Target

SERIAL_PROBES = 4  # inconclusive hosts probed one at a time before widening to the safe width
LOCAL_POLL = 0.5  # seconds a waiting engine sleeps before asking again (a finishing host wakes it earlier)
UNAVAILABLE_PATIENCE = 30.0  # seconds the shared state may stay unreadable before the engine gives up
LEASE_SECONDS = 5.0  # a probe lease not renewed this long is free again (its holder died)
# A noted logon whose outcome was never recorded is past doubt this long after its host's own
# deadline (the collector's hard per-host limit): its engine died, or lost the shared state.
NOTE_GRACE = 30.0
# The note of the account's own logon (the Kerberos AS exchange) among the hosts' notes: no host
# name has a space or parentheses, and a failed pre-authentication counts like a rejecting host.
ACCOUNT_LOGON = "(account logon)"
NOT_ATTEMPTED = "not_attempted"  # the reason (stage auth) of every host the breaker kept the credentials from


class Admission(Enum):
    """What the engine may do with its next host."""

    START = "start"  # start it now
    WAIT = "wait"  # wait until a host in flight finishes, then ask again
    STOP = "stop"  # start no more hosts: the breaker tripped


class SharedLogonUnavailable(Exception):
    """The shared logon state cannot be read or written now; the policy waits, then stops (fail safe).

    Not an application error: `LogonPolicy` always catches it and turns it into waiting, then into
    each host's `site/no_logon_state`; it never reaches `main`.
    """


@dataclass(frozen=True)
class SharedView:
    """One account's logon state in this scan, as every engine sharing it sees it now."""

    rejected: frozenset[str] = frozenset()  # distinct hosts that rejected an engine's logon before its proof
    lost: int = 0  # other engines' noted logons past their deadline with no outcome: counted as rejections
    others: int = 0  # other engines' noted logons still in flight (unproven): counted as in flight
    proven: bool = False  # some engine's logon was accepted (not necessarily with this engine's password)
    refused: HostError | None = None  # the account's Kerberos logon was refused: no engine tries it again


class SharedLogon(Protocol):
    """One account's logon state shared by the engines that spend it in one scan (module docstring).

    Every method may raise SharedLogonUnavailable; writes that fail are never retried blindly.
    """

    def view(self) -> SharedView:
        """Return the shared state now."""

    def claim(self) -> bool:
        """Take or keep the probe lease; return whether this engine holds it."""

    def release(self) -> None:
        """Give the probe lease back, if held."""

    def begin(self, host: str, within: float) -> bool:
        """Note an unproven logon before it is sent (done within `within` s); False: the lease was lost."""

    def finish(self, host: str, logon: Logon | None) -> None:
        """Record how a noted logon ended: a rejection (a distinct host), a proof, or no verdict."""

    def refuse(self, error: HostError) -> None:
        """Record that the account's Kerberos logon was refused, for the other engines."""


@dataclass
class LogonBook:
    """One account's shared logon state in this process, for every `MemoryLogon` that shares it."""

    rejected: set[str] = field(default_factory=set)
    proven: bool = False
    refused: HostError | None = None
    lease: tuple[str, float] | None = None  # (holder, monotonic time it lapses)
    notes: dict[tuple[str, str], float] = field(default_factory=dict)  # (holder, host) -> deadline
    lock: threading.Lock = field(default_factory=threading.Lock)


class MemoryLogon:
    """A SharedLogon in memory: a local scan's own, or one engine of several sharing a `LogonBook`."""

    def __init__(
        self,
        book: LogonBook | None = None,
        *,
        lease: float = LEASE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.book = book if book is not None else LogonBook()
        self.holder = uuid.uuid4().hex
        self.lease = lease
        self.clock = clock

    def view(self) -> SharedView:
        """Return the book's state as this engine sees it."""
        now = self.clock()
        with self.book.lock:
            others = [deadline for (holder, _), deadline in self.book.notes.items() if holder != self.holder]
            return SharedView(
                rejected=frozenset(self.book.rejected),
                lost=sum(1 for deadline in others if deadline < now),
                others=sum(1 for deadline in others if deadline >= now),
                proven=self.book.proven,
                refused=self.book.refused,
            )

    def claim(self) -> bool:
        """Take the lease when it is free, lapsed or this engine's own (then renew it)."""
        now = self.clock()
        with self.book.lock:
            if self.book.lease is not None and self.book.lease[0] != self.holder and self.book.lease[1] > now:
                return False
            self.book.lease = (self.holder, now + self.lease)
            return True

    def release(self) -> None:
        """Free the lease if this engine holds it."""
        with self.book.lock:
            if self.book.lease is not None and self.book.lease[0] == self.holder:
                self.book.lease = None

    def begin(self, host: str, within: float) -> bool:
        """Note the logon, as long as this engine holds the lease."""
        now = self.clock()
        with self.book.lock:
            if self.book.lease is None or self.book.lease[0] != self.holder or self.book.lease[1] <= now:
                return False
            self.book.notes[(self.holder, host)] = now + within + NOTE_GRACE
            return True

    def finish(self, host: str, logon: Logon | None) -> None:
        """Drop the note and keep the outcome."""
        with self.book.lock:
            self.book.notes.pop((self.holder, host), None)
            if logon is Logon.REJECTED:
                self.book.rejected.add(host)
            elif logon is Logon.ACCEPTED:
                self.book.proven = True

    def refuse(self, error: HostError) -> None:
        """Keep the refusal for the other engines."""
        with self.book.lock:
            self.book.refused = error


@dataclass
class LogonPolicy:
    """How many hosts may be in flight, given what the logons so far proved (module docstring)."""

    concurrency: int
    max_auth_failures: int = DEFAULT_MAX_AUTH_FAILURES
    serial_probes: int = SERIAL_PROBES
    proven: bool = False  # a host accepted this engine's logon
    rejected: list[str] = field(default_factory=list)  # hosts that rejected the logon before any success
    rejected_after_proof: int = 0
    inconclusive: int = 0  # hosts finished with no verdict on the credentials, while probing
    shared: SharedLogon | None = None  # None: a MemoryLogon of this engine's own (a local scan)
    poll: float = LOCAL_POLL  # how stale a look at the shared state may be, and how long a waiting engine sleeps
    patience: float = UNAVAILABLE_PATIENCE
    clock: Callable[[], float] = time.monotonic
    _view: SharedView = field(default_factory=SharedView, init=False, repr=False)
    _looked: float = field(default=-math.inf, init=False, repr=False)
    _holding: bool = field(default=False, init=False, repr=False)
    _begun: set[str] = field(default_factory=set, init=False, repr=False)
    _unavailable_since: float | None = field(default=None, init=False, repr=False)
    _halt: HostError | None = field(default=None, init=False, repr=False)  # a stop that is not the breaker's

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_auth_failures < 1 or self.serial_probes < 0:
            raise ValueError("concurrency and max_auth_failures must be at least 1, serial_probes at least 0")
        if self.shared is None:
            self.shared = MemoryLogon(clock=self.clock)

    @property
    def _state(self) -> SharedLogon:
        assert self.shared is not None  # set in __post_init__
        return self.shared

    def rejections(self) -> int:
        """Return the rejections the breaker counts: this engine's and every sharing engine's, lost ones too."""
        return len(self._view.rejected.union(self.rejected)) + self._view.lost

    @property
    def tripped(self) -> bool:
        """Return whether the breaker stopped the scan: K rejections, no accepted logon."""
        return not self.proven and self.rejections() >= self.max_auth_failures

    @property
    def stopped(self) -> bool:
        """Return whether this engine starts no more hosts: the breaker, a refused logon, or no shared state."""
        return not self.proven and (self._halt is not None or self.tripped)

    def width(self) -> int:
        """Return how many hosts may be in flight now."""
        if self.proven:
            return self.concurrency
        if self.tripped:
            return 0
        if self.inconclusive < self.serial_probes:
            return 1
        return min(self.concurrency, self.max_auth_failures - self.rejections())

    def admit(self, in_flight: int) -> Admission:
        """Return whether another host may start while `in_flight` hosts of this engine are running."""
        if self.proven:
            return Admission.START if in_flight < self.concurrency else Admission.WAIT
        if self._halt is None:
            self._look()
        if self._halt is not None:
            self._let_go()
            return Admission.STOP
        if self.tripped:
            self._let_go()
            return Admission.STOP
        if self._unavailable_since is not None or not self._claim():
            return Admission.WAIT  # no logon on a stale view, nor without the lease
        return Admission.START if in_flight + self._view.others < self.width() else Admission.WAIT

    def begin(self, target: Target, within: float) -> bool:
        """Note a host about to be sent the credentials (after START); False: do not start it, ask again."""
        if self.proven:
            return True
        noted = self._note(target.name, within)
        if noted:
            self._begun.add(target.name)
        return noted

    def record(self, observation: Observation) -> None:
        """Take one finished host's logon outcome into account."""
        name = observation.target.name
        if observation.logon is Logon.ACCEPTED:
            self.proven = True
        elif observation.logon is Logon.REJECTED:
            if self.proven:
                self.rejected_after_proof += 1
            elif name not in self.rejected:
                self.rejected.append(name)
        elif not self.proven:
            self.inconclusive += 1
        if name in self._begun:
            self._begun.discard(name)
            self._looked = -math.inf  # the shared counts changed: look again before the next start
            self._finish(name, observation.logon)
        if self.proven or self.tripped:
            self._let_go()

    def prove(self, login: Callable[[], None], stop: threading.Event, within: float) -> None:
        """Run the account's logon (the Kerberos AS exchange of `AuthMaterial.prove`) holding the probe lease.

        Once proven the logon runs at once (it has its ticket already, or its password was accepted).
        Otherwise it is noted like a host's (`within` seconds at most), so that an engine dying in
        the middle leaves a rejection, not a silence. Returns without logging on when `stop` is set
        or the engine stopped (its hosts are then reported by `not_attempted`); raises
        KerberosLoginError when this logon, or another engine's logon of the account in this scan,
        was refused.
        """
        if self.proven:
            login()
            return
        while True:
            if stop.is_set():
                return
            admission = self.admit(0)
            if admission is Admission.STOP:
                refused = self._view.refused
                if refused is not None and self._halt is refused:
                    raise KerberosLoginError(refused.message, refused.reason)
                return
            if admission is Admission.START and self._note(ACCOUNT_LOGON, within):
                break
            stop.wait(self.poll)
        try:
            login()
        except KerberosLoginError as exc:
            error = HostError(stage=Stage.AUTH, reason=exc.reason, message=str(exc))
            try:
                self._state.refuse(error)
            except SharedLogonUnavailable:
                self._unavailable()  # the others wait, then stop: they never try it unshared
            self._finish(ACCOUNT_LOGON, Logon.REJECTED)
            self._let_go()
            raise
        self._finish(ACCOUNT_LOGON, None)  # a TGT, or no exchange at all: no verdict on the hosts' logons

    def rejected_hosts(self) -> frozenset[str]:
        """Return the hosts that rejected the account's unproven logon in this scan, by any engine sharing it.

        The breaker counts distinct hosts, so a host tried twice (a batch delivered again after its
        worker died) would cost the account a second failure the breaker never sees: such hosts
        are not to be tried again. Read fresh from the shared state; what it cannot read, it does
        not know (the policy then waits anyway).
        """
        self._looked = -math.inf
        self._look()
        return self._view.rejected.union(self.rejected)

    def release(self) -> None:
        """Give the probe lease back (the engine's batch ended); it is claimed again when needed."""
        self._let_go()

    def stop_message(self) -> str:
        """Return why the scan stopped (the message every host not attempted carries)."""
        message = f"credentials rejected by {self.rejections()} hosts; stopped so the account is not locked out"
        if self._view.proven and not self.proven:
            message += " (another collector's logon of this account was accepted: check this one's password)"
        return message

    def stop_error(self) -> HostError:
        """Return the error of every host this engine did not start once it stopped."""
        if self._halt is not None:
            return self._halt
        return HostError(stage=Stage.AUTH, reason=NOT_ATTEMPTED, message=self.stop_message())

    def not_attempted(self, target: Target) -> Observation:
        """Return the observation of a host the breaker kept the credentials away from."""
        return Observation(target=target, error=self.stop_error())

    def _look(self) -> None:
        """Refresh the shared view when it is older than `poll` seconds."""
        now = self.clock()
        if now - self._looked < self.poll:
            return
        try:
            self._view = self._state.view()
        except SharedLogonUnavailable:
            self._unavailable()
            return
        self._looked = now
        self._unavailable_since = None
        if self._view.refused is not None:
            self._halt = self._view.refused

    def _note(self, name: str, within: float) -> bool:
        try:
            noted = self._state.begin(name, within)
        except SharedLogonUnavailable:
            self._unavailable()
            return False
        if not noted:
            self._holding = False  # the lease lapsed: claim it again before the next logon
        return noted

    def _finish(self, name: str, logon: Logon | None) -> None:
        try:
            self._state.finish(name, logon)
        except SharedLogonUnavailable:
            # Not retried: the note is no longer renewed and lapses into a rejection for everyone.
            self._unavailable()

    def _claim(self) -> bool:
        try:
            self._holding = self._state.claim()
        except SharedLogonUnavailable:
            self._unavailable()
            self._holding = False
        return self._holding and self._halt is None

    def _let_go(self) -> None:
        if not self._holding:
            return
        self._holding = False
        with contextlib.suppress(SharedLogonUnavailable):  # the lease then lapses by itself (LEASE_SECONDS)
            self._state.release()

    def _unavailable(self) -> None:
        """Wait while the shared state cannot be read; past `patience`, stop (never probe unshared)."""
        now = self.clock()
        if self._unavailable_since is None:
            self._unavailable_since = now
            self._looked = -math.inf
        elif now - self._unavailable_since >= self.patience and self._halt is None:
            self._halt = HostError(
                stage=Stage.SITE,
                reason="no_logon_state",
                message=(
                    f"the account's shared logon state could not be read for {self.patience:g} s;"
                    " not contacted, so the account is not locked out"
                ),
            )
