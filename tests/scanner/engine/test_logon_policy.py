"""The lockout policy alone (scanner/engine/logon.py): widths, the breaker, what counts as evidence."""

from __future__ import annotations

import pytest

from scanner.core.models import HostError, Logon, Observation, Stage, Target
from scanner.engine.logon import Admission, LogonPolicy


def obs(name: str, logon: Logon | None, error: tuple[Stage, str] | None = None) -> Observation:
    failure = None if error is None else HostError(stage=error[0], reason=error[1], message="m")
    return Observation(target=Target(name=name, address="127.0.0.1", port=5985), error=failure, logon=logon)


def rejected(name: str) -> Observation:
    return obs(name, Logon.REJECTED, (Stage.AUTH, "unauthorized"))


def refused(name: str) -> Observation:
    return obs(name, None, (Stage.CONNECT, "refused"))


def test_one_host_in_flight_until_a_logon_is_accepted_then_full_width() -> None:
    policy = LogonPolicy(concurrency=64)
    assert policy.admit(0) is Admission.START
    assert policy.admit(1) is Admission.WAIT
    policy.record(obs("a", Logon.ACCEPTED))
    assert policy.width() == 64
    assert policy.admit(63) is Admission.START and policy.admit(64) is Admission.WAIT


def test_k_rejections_without_a_success_trip_the_breaker() -> None:
    policy = LogonPolicy(concurrency=64, max_auth_failures=3)
    for name in ("a", "b"):
        policy.record(rejected(name))
        assert not policy.tripped and policy.admit(0) is Admission.START
    policy.record(rejected("c"))
    assert policy.tripped and policy.admit(0) is Admission.STOP
    assert policy.stop_message() == "credentials rejected by 3 hosts; stopped so the account is not locked out"
    skipped = policy.not_attempted(Target(name="d", address="127.0.0.1", port=5985))
    assert skipped.error is not None
    assert (skipped.error.stage, skipped.error.reason) == (Stage.AUTH, "not_attempted")
    assert skipped.logon is None and skipped.requests == 0


def test_the_same_host_twice_is_one_rejection() -> None:
    policy = LogonPolicy(concurrency=8, max_auth_failures=2)
    policy.record(rejected("a"))
    policy.record(rejected("a"))
    assert not policy.tripped


def test_rejections_after_a_success_never_trip() -> None:
    policy = LogonPolicy(concurrency=8, max_auth_failures=1)
    policy.record(obs("a", Logon.ACCEPTED))
    for name in "bcdef":
        policy.record(rejected(name))
    assert not policy.tripped and policy.rejected_after_proof == 5 and policy.width() == 8


def test_inconclusive_hosts_prove_nothing_then_widen_only_to_the_safe_width() -> None:
    policy = LogonPolicy(concurrency=64, max_auth_failures=3, serial_probes=4)
    for n in range(3):
        policy.record(refused(f"r{n}"))
        assert policy.width() == 1  # still probing one at a time
    policy.record(obs("t", None, (Stage.TIMEOUT, "deadline")))
    # Bounded serial probing is over: as many in flight as rejections the breaker still allows.
    assert policy.width() == 3 and not policy.proven
    policy.record(rejected("x"))
    assert policy.width() == 2
    policy.record(rejected("y"))
    assert policy.width() == 1
    policy.record(rejected("z"))
    assert policy.tripped and policy.width() == 0


@pytest.mark.parametrize("failures", [0, -1])
def test_the_breaker_cannot_be_switched_off(failures: int) -> None:
    with pytest.raises(ValueError, match="max_auth_failures"):
        LogonPolicy(concurrency=4, max_auth_failures=failures)
