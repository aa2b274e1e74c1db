"""The lockout policy on a shared state (scanner/engine/logon.py): engines spending one account at once.

Two `LogonPolicy`s over one in-memory `LogonBook` stand for two workers of a site
(docs/authentication.md#lockout-safety): one probe lease, one count of rejections, each engine's
own proof, a dead engine's lease and notes, a refused Kerberos logon, and a shared state that
cannot be read (fail safe).
"""

from __future__ import annotations

import threading

import pytest

from scanner.collect.wsman.kerberos import KerberosLoginError
from scanner.core.models import HostError, Logon, Observation, Stage, Target
from scanner.engine.logon import (
    NOTE_GRACE,
    Admission,
    LogonBook,
    LogonPolicy,
    MemoryLogon,
    SharedLogonUnavailable,
    SharedView,
)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def target(name: str) -> Target:
    return Target(name=name, address="127.0.0.1", port=5985)


def obs(name: str, logon: Logon | None) -> Observation:
    error = None if logon is Logon.ACCEPTED else HostError(stage=Stage.AUTH, reason="unauthorized", message="m")
    return Observation(target=target(name), error=error, logon=logon)


def engines(count: int, clock: Clock, **options: int) -> list[LogonPolicy]:
    """Return `count` policies sharing one book, as a site's workers share the broker's state."""
    book = LogonBook()
    return [
        LogonPolicy(concurrency=8, shared=MemoryLogon(book, clock=clock), poll=0.0, clock=clock, **options)
        for _ in range(count)
    ]


def start(policy: LogonPolicy, name: str, in_flight: int = 0) -> bool:
    """Ask as the pool does: admit, then note the logon; return whether the host started."""
    return policy.admit(in_flight) is Admission.START and policy.begin(target(name), 5.0)


def test_only_the_lease_holder_logs_on_while_the_account_is_unproven() -> None:
    clock = Clock()
    a, b = engines(2, clock)
    assert start(a, "a1")
    assert b.admit(0) is Admission.WAIT  # a holds the lease
    assert a.admit(1) is Admission.WAIT  # and probes one host at a time


def test_rejections_are_counted_across_engines_and_trip_every_unproven_one() -> None:
    clock = Clock()
    a, b = engines(2, clock, max_auth_failures=3)
    for name in ("h1", "h2"):
        assert start(a, name)
        a.record(obs(name, Logon.REJECTED))
    a.release()  # a's batch ended: the lease is free
    assert start(b, "h3")
    b.record(obs("h3", Logon.REJECTED))
    assert b.tripped and b.admit(0) is Admission.STOP
    assert a.admit(0) is Admission.STOP  # a sees b's rejection: 3 in all, none accepted
    assert a.not_attempted(target("x")).error == HostError(
        stage=Stage.AUTH,
        reason="not_attempted",
        message="credentials rejected by 3 hosts; stopped so the account is not locked out",
    )


def test_the_safe_width_counts_the_other_engines_rejections_and_logons_in_flight() -> None:
    clock = Clock()
    a, b = engines(2, clock, max_auth_failures=3, serial_probes=0)
    assert start(a, "h1") and start(a, "h2")
    a.record(obs("h1", Logon.REJECTED))
    a.release()  # as if a's lease lapsed while h2 was still in flight
    assert b.admit(0) is Admission.START  # 3 - 1 rejection - 1 of a's in flight = 1
    assert b.begin(target("h3"), 5.0)
    assert b.admit(1) is Admission.WAIT


def test_each_engine_proves_its_own_password_before_it_fans_out() -> None:
    clock = Clock()
    a, b = engines(2, clock)
    assert start(a, "a1")
    a.record(obs("a1", Logon.ACCEPTED))
    assert a.admit(7) is Admission.START  # a is proven: full width, no lease
    # b's password may be a stale copy: it probes one host under the lease a gave back.
    assert start(b, "b1") and b.admit(1) is Admission.WAIT
    b.record(obs("b1", Logon.ACCEPTED))
    assert b.admit(7) is Admission.START and b.admit(8) is Admission.WAIT


def test_a_stale_password_on_one_engine_trips_it_while_the_proven_one_goes_on() -> None:
    clock = Clock()
    a, b = engines(2, clock, max_auth_failures=3)
    assert start(a, "a1")
    a.record(obs("a1", Logon.ACCEPTED))
    for name in ("b1", "b2", "b3"):
        assert start(b, name)
        b.record(obs(name, Logon.REJECTED))
    assert b.admit(0) is Admission.STOP
    assert "another collector's logon of this account was accepted" in b.stop_message()
    assert a.admit(0) is Admission.START and not a.stopped


def test_a_dead_engines_lease_delays_the_others_until_it_lapses() -> None:
    clock = Clock()
    book = LogonBook()
    book.lease = ("dead", clock.now + 5.0)
    policy = LogonPolicy(concurrency=8, shared=MemoryLogon(book, clock=clock), poll=0.0, clock=clock)
    assert policy.admit(0) is Admission.WAIT
    clock.now += 5.1
    assert start(policy, "h1")


def test_a_dead_engines_logon_counts_in_flight_then_as_a_rejection() -> None:
    clock = Clock()
    book = LogonBook()
    book.notes[("dead", "d1")] = clock.now + 5.0 + NOTE_GRACE
    policy = LogonPolicy(
        concurrency=8, max_auth_failures=2, shared=MemoryLogon(book, clock=clock), poll=0.0, clock=clock
    )
    assert policy.admit(0) is Admission.WAIT  # its outcome may still come: one probe in flight already
    clock.now += 5.0 + NOTE_GRACE + 1
    assert start(policy, "h1")  # past its deadline the unknown outcome counts as a rejection
    policy.record(obs("h1", Logon.REJECTED))
    assert policy.tripped and policy.rejections() == 2


def test_a_refused_kerberos_logon_is_never_tried_again_by_another_engine() -> None:
    clock = Clock()
    a, b = engines(2, clock)
    stop = threading.Event()

    def refused() -> None:
        raise KerberosLoginError("Kerberos logon as svc failed (auth/preauth_failed)", "preauth_failed")

    with pytest.raises(KerberosLoginError):
        a.prove(refused, stop, 5.0)
    tried: list[str] = []
    with pytest.raises(KerberosLoginError) as raised:
        b.prove(lambda: tried.append("b"), stop, 5.0)
    assert tried == [] and raised.value.reason == "preauth_failed"
    assert b.rejections() == 1  # the failed pre-authentication counts against the account like a host
    assert b.not_attempted(target("x")).error == HostError(
        stage=Stage.AUTH, reason="preauth_failed", message="Kerberos logon as svc failed (auth/preauth_failed)"
    )


def test_the_kerberos_logon_waits_for_the_lease() -> None:
    clock = Clock()
    a, b = engines(2, clock)
    assert start(a, "a1")
    stop = threading.Event()
    tried: list[str] = []
    waiting = threading.Thread(target=b.prove, args=(lambda: tried.append("b"), stop, 5.0))
    waiting.start()
    waiting.join(0.2)
    assert waiting.is_alive() and tried == []  # a probes: b makes no AS exchange meanwhile
    a.record(obs("a1", Logon.ACCEPTED))  # a is proven and gives the lease back
    waiting.join(5)
    assert not waiting.is_alive() and tried == ["b"]


class Unreachable:
    """A shared state whose store is down: every call fails."""

    def view(self) -> SharedView:
        raise SharedLogonUnavailable("ConnectionError")

    def claim(self) -> bool:
        raise SharedLogonUnavailable("ConnectionError")

    def release(self) -> None:
        raise SharedLogonUnavailable("ConnectionError")

    def begin(self, host: str, within: float) -> bool:
        raise SharedLogonUnavailable("ConnectionError")

    def finish(self, host: str, logon: Logon | None) -> None:
        raise SharedLogonUnavailable("ConnectionError")

    def refuse(self, error: HostError) -> None:
        raise SharedLogonUnavailable("ConnectionError")


def test_an_unreachable_shared_state_never_lets_an_unproven_engine_log_on_and_ends_in_a_clear_error() -> None:
    clock = Clock()
    policy = LogonPolicy(concurrency=8, shared=Unreachable(), poll=0.0, patience=30.0, clock=clock)
    for _ in range(5):
        assert policy.admit(0) is Admission.WAIT
        clock.now += 6.0
    assert policy.admit(0) is Admission.STOP and policy.stopped
    error = policy.not_attempted(target("x")).error
    assert error is not None and (error.stage, error.reason) == (Stage.SITE, "no_logon_state")


def test_an_engine_dying_in_its_kerberos_logon_leaves_a_rejection_not_a_silence() -> None:
    clock = Clock()
    a, b = engines(2, clock, max_auth_failures=3)
    stop = threading.Event()

    def dies() -> None:
        clock.now += 2.0
        raise SystemExit  # the process ends mid-exchange: nothing recorded, nothing released

    with pytest.raises(SystemExit):
        a.prove(dies, stop, 5.0)
    assert b.admit(0) is Admission.WAIT  # a's lease and its noted logon are still alive
    clock.now += 5.0 + NOTE_GRACE
    assert b.admit(0) is Admission.START and b.rejections() == 1


def test_an_outage_after_the_proof_changes_nothing() -> None:
    clock = Clock()
    policy = LogonPolicy(concurrency=8, shared=Unreachable(), poll=0.0, clock=clock, proven=True)
    assert policy.admit(7) is Admission.START and policy.begin(target("h"), 5.0)
    policy.record(obs("h", Logon.REJECTED))  # a per-host authorisation problem, as in a local scan
    assert policy.rejected_after_proof == 1 and not policy.stopped
