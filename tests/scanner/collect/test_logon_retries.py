"""A rejected logon is never retried: every retry path of the transport, counted by the lab per host.

The lab counts each logon it judges (docs/lab.md, "Counters"), as a domain controller's failed-logon
counter would; docs/authentication.md#lockout-safety lists the retry paths these tests cover.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from scanner.collect.collector import collect_host
from scanner.collect.wsman.auth import AuthMaterial
from scanner.collect.wsman.errors import CollectError
from scanner.collect.wsman.http import Deadline
from scanner.collect.wsman.transport import WsmanTransport
from scanner.core.models import AuthMethod, CollectOptions, Credentials, Logon, Observation, Scheme, Stage, Target
from tests.peers.lab import RunningLab, start_lab

ESTATE = Path(__file__).parent / "data" / "logon_estate.yaml"
RIGHT = Credentials(username="LAB\\auditor", password=SecretStr("Lab-Passw0rd!"))
WRONG = Credentials(username="LAB\\auditor", password=SecretStr("Winter2024!"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    with start_lab(ESTATE, tmp_path_factory.mktemp("lab"), stats=True) as running:
        yield running


def target(lab: RunningLab, name: str, *, port: int | None = None) -> Target:
    address, listening, scheme = lab.hosts[name]
    basic = scheme == "https"
    return Target(
        name=name,
        address=address,
        port=port or listening,
        scheme=Scheme(scheme),
        transport=AuthMethod.BASIC if basic else AuthMethod.NTLM,
    )


def options(lab: RunningLab, **overrides: object) -> CollectOptions:
    values: dict[str, object] = {"host_timeout": 5.0, "connect_timeout": 1.0, "ca_bundle": str(lab.ca)}
    values.update(overrides)
    return CollectOptions.model_validate(values)


class Logons:
    """The lab's per-host logon counts since the last look."""

    def __init__(self, lab: RunningLab) -> None:
        self.lab = lab
        self.before = self._by_host()

    def _by_host(self) -> dict[str, dict[str, int]]:
        by_host: dict[str, dict[str, int]] = self.lab.stats()["logons"]["by_host"]
        return by_host

    def delta(self) -> dict[str, tuple[int, int, int]]:
        """Return host -> (attempts, failures, successes) added since construction, hosts with any."""
        now = self._by_host()
        out: dict[str, tuple[int, int, int]] = {}
        for name, counts in now.items():
            old: dict[str, Any] = self.before.get(name, {})
            change = tuple(counts[k] - old.get(k, 0) for k in ("attempts", "failures", "successes"))
            if any(change):
                out[name] = (change[0], change[1], change[2])
        return out


def rejected(observation: Observation) -> bool:
    error = observation.error
    return error is not None and (error.stage, error.reason) == (Stage.AUTH, "unauthorized")


@pytest.mark.parametrize("name", ["good", "good-https-basic"])
def test_a_wrong_password_is_one_failed_logon_per_host_ntlm_and_basic(lab: RunningLab, name: str) -> None:
    logons = Logons(lab)
    observation = collect_host(target(lab, name), WRONG, options(lab))
    assert rejected(observation) and observation.logon is Logon.REJECTED
    assert logons.delta() == {name: (1, 1, 0)}


@pytest.mark.parametrize("name", ["reject", "reject-https-basic"])
def test_a_host_that_rejects_the_right_password_is_asked_once(lab: RunningLab, name: str) -> None:
    logons = Logons(lab)
    observation = collect_host(target(lab, name), RIGHT, options(lab))
    assert rejected(observation) and observation.logon is Logon.REJECTED
    assert logons.delta() == {name: (1, 1, 0)}


def test_an_accepted_logon_is_recorded(lab: RunningLab) -> None:
    logons = Logons(lab)
    observation = collect_host(target(lab, "good"), RIGHT, options(lab))
    assert observation.error is None and observation.logon is Logon.ACCEPTED
    assert logons.delta() == {"good": (1, 0, 1)}


@pytest.mark.parametrize("name", ["once-503", "once-drop"])
def test_the_retry_after_503_or_a_dropped_connection_logs_on_again_only_after_a_success(
    lab: RunningLab, name: str
) -> None:
    # The retry needs a new security context, hence a second logon: allowed, the first was accepted.
    logons = Logons(lab)
    observation = collect_host(target(lab, name), RIGHT, options(lab))
    assert observation.error is None and observation.logon is Logon.ACCEPTED
    assert logons.delta() == {name: (2, 0, 2)}


def test_the_transport_never_starts_a_second_handshake_after_a_rejection(lab: RunningLab) -> None:
    logons = Logons(lab)
    transport = WsmanTransport(target(lab, "good"), AuthMaterial(WRONG), options(lab), Deadline(5.0))
    try:
        for _ in range(3):  # the first call is rejected by the host; the others never leave
            with pytest.raises(CollectError) as caught:
                transport.authenticate()
            assert (caught.value.stage, caught.value.reason) == (Stage.AUTH, "unauthorized")
        with pytest.raises(CollectError):
            transport.send_message(b"<s:Envelope/>")  # the message path (and its retries) too
    finally:
        transport.close()
    assert transport.requests == 2 and transport.logon is Logon.REJECTED
    assert logons.delta() == {"good": (1, 1, 0)}


def test_the_winrm_1_1_port_fallback_never_follows_a_rejection(lab: RunningLab) -> None:
    other = lab.hosts["fallback-target"][1]
    reject = target(lab, "reject")
    logons = Logons(lab)
    # As if the rejecting host's port were 5985 and the other host's its 80 (the lab cannot bind 80).
    fallback = options(lab, legacy_port_fallback=True, fallback_ports=((reject.port, other),))
    observation = collect_host(reject, RIGHT, fallback)
    assert rejected(observation) and observation.target.port == reject.port
    assert logons.delta() == {"reject": (1, 1, 0)}  # nothing reached the fallback port


def test_the_winrm_1_1_port_fallback_follows_a_refused_connection_with_one_logon(lab: RunningLab) -> None:
    refused = target(lab, "refuse")
    other = lab.hosts["fallback-target"][1]
    logons = Logons(lab)
    fallback = options(lab, legacy_port_fallback=True, fallback_ports=((refused.port, other),))
    observation = collect_host(refused, WRONG, fallback)
    assert rejected(observation) and observation.target.port == other
    assert logons.delta() == {"fallback-target": (1, 1, 0)}  # the lab names the listener, not the inventory
