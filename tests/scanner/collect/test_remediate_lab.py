"""apply_host against the lab: every step done, the host left alone when it changed, each failure with its step."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from scanner.collect.remediate import ActionKind, Change, HostApply, Outcome, apply_host
from scanner.collect.wsman.auth import AuthMaterial
from scanner.core.models import (
    IPSEC_KEY,
    POLICYAGENT_KEY,
    VALUE_NAME,
    CollectOptions,
    Credentials,
    RegistryValue,
    Scheme,
    Stage,
    Target,
)
from tests.peers.lab import RunningLab, start_lab
from tests.support.labstate import read_state, state_args

CREDENTIALS = Credentials(username="LAB\\auditor", password=SecretStr("Lab-Passw0rd!"))
ESTATE = r"""
accounts:
  - {username: 'LAB\auditor', password: 'Lab-Passw0rd!'}
defaults:
  os: win10
  wmi_ms: 0
  registry:
    'SYSTEM\CurrentControlSet\Services\PolicyAgent':
      AssumeUDPEncapsulationContextOnSendRule: {type: REG_DWORD, data: 2}
hosts:
  - name: w10-stray
    registry:  # replaces the default registry: both keys
      'SYSTEM\CurrentControlSet\Services\IPsec': {AssumeUDPEncapsulationContextOnSendRule: {type: REG_SZ, data: '1'}}
      'SYSTEM\CurrentControlSet\Services\PolicyAgent':
        AssumeUDPEncapsulationContextOnSendRule: {type: REG_DWORD, data: 2}
  - {name: changed}
  - {name: readonly, write_denied_keys: ['SYSTEM\CurrentControlSet\Services\PolicyAgent']}
  - {name: nostart, policyagent: {start_error: 7}}
  - {name: nostop, policyagent: {stop_error: 3}}
  - {name: slow, policyagent: {stop_ms: 300, start_ms: 300}}
  - {name: stopped, policyagent: {state: Stopped}}
  - {name: nokey, registry: {'SYSTEM\CurrentControlSet\Services\PolicyAgent': null}}
  - {name: refused, fault: refuse}
  - {name: rejects, fault: auth-reject}
"""
DWORD2 = RegistryValue(name=VALUE_NAME, type="REG_DWORD", data=2)
SET0 = Change(action=ActionKind.SET_VALUE, key=POLICYAGENT_KEY, before=DWORD2, data=0)
RESTART = Change(action=ActionKind.RESTART_SERVICE, service="PolicyAgent")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    work = tmp_path_factory.mktemp("applylab")
    estate = work / "estate.yaml"
    estate.write_text(ESTATE, encoding="utf-8")
    with start_lab(estate, work, extra_args=state_args(work)) as running:
        yield running


def state(lab: RunningLab, name: str) -> dict[str, Any]:
    host: dict[str, Any] = read_state(lab)[name]
    return host


def apply(lab: RunningLab, name: str, *changes: Change) -> HostApply:
    address, port, scheme = lab.hosts[name]
    target = Target(name=name, address=address, port=port, scheme=Scheme(scheme))
    options = CollectOptions(host_timeout=10, connect_timeout=2)
    return apply_host(target, AuthMaterial(CREDENTIALS), options, changes)


def results(done: HostApply) -> list[tuple[str, str, str | None]]:
    return [(a.action.value, a.result.value, a.reason) for a in done.actions]


def test_set_delete_restart_all_done_and_in_force(lab: RunningLab) -> None:
    stray = RegistryValue(name=VALUE_NAME, type="REG_SZ", data="1")
    delete = Change(action=ActionKind.DELETE_VALUE, key=IPSEC_KEY, before=stray)
    done = apply(lab, "w10-stray", SET0, delete, RESTART)
    assert results(done) == [("set_value", "done", None), ("delete_value", "done", None),
                             ("restart_service", "done", None)]
    assert done.complete and done.observation.error is None
    set_result = done.actions[0]
    assert (set_result.before, set_result.after) == (DWORD2, DWORD2.model_copy(update={"data": 0}))
    assert (done.actions[1].before, done.actions[1].after) == (stray, None)
    assert (done.actions[2].before, done.actions[2].after) == ("Running", "Running")
    host = state(lab, "w10-stray")
    assert host["registry"] == {POLICYAGENT_KEY: {VALUE_NAME: ["REG_DWORD", 0]}, IPSEC_KEY: {}}
    assert host["policyagent"] == {"state": "Running", "effective": ["REG_DWORD", 0], "starts": 1, "stops": 1}


def test_a_host_changed_since_the_report_is_left_alone(lab: RunningLab) -> None:
    stale = Change(action=ActionKind.SET_VALUE, key=POLICYAGENT_KEY,
                   before=RegistryValue(name=VALUE_NAME, type="REG_SZ", data="2"), data=0)
    done = apply(lab, "changed", stale, RESTART)
    assert results(done) == [("set_value", "skipped", "changed_since_report"),
                             ("restart_service", "skipped", "changed_since_report")]
    assert "the report saw REG_SZ '2', the host now holds REG_DWORD 2" in done.actions[0].message
    assert state(lab, "changed")["policyagent"]["stops"] == 0


def test_write_denied_fails_the_set_and_skips_the_restart(lab: RunningLab) -> None:
    done = apply(lab, "readonly", SET0, RESTART)
    assert results(done) == [("set_value", "failed", "access_denied"),
                             ("restart_service", "skipped", "earlier_step_failed")]
    assert "ReturnValue 5" in done.actions[0].message
    host = state(lab, "readonly")
    assert host["registry"][POLICYAGENT_KEY] == {VALUE_NAME: ["REG_DWORD", 2]}
    assert host["policyagent"]["stops"] == 0


def test_a_service_that_does_not_start_again_is_reported_stopped(lab: RunningLab) -> None:
    done = apply(lab, "nostart", SET0, RESTART)
    assert results(done) == [("set_value", "done", None), ("restart_service", "failed", "service_start_failed")]
    assert "StartService returned 7 (service request timeout): PolicyAgent is STOPPED" in done.actions[1].message
    assert done.actions[1].after == "Stopped"
    assert not done.complete
    assert state(lab, "nostart")["policyagent"] == {
        "state": "Stopped", "effective": ["REG_DWORD", 2], "starts": 0, "stops": 1  # the old value was in force
    }


def test_a_service_that_refuses_to_stop(lab: RunningLab) -> None:
    done = apply(lab, "nostop", SET0, RESTART)
    assert results(done)[1] == ("restart_service", "failed", "service_stop_failed")
    assert "3 (dependent services running)" in done.actions[1].message
    assert state(lab, "nostop")["policyagent"]["state"] == "Running"


def test_pending_states_are_polled(lab: RunningLab) -> None:
    done = apply(lab, "slow", SET0, RESTART)
    assert results(done)[1] == ("restart_service", "done", None)
    assert state(lab, "slow")["policyagent"]["effective"] == ["REG_DWORD", 0]


def test_a_stopped_service_is_not_started(lab: RunningLab) -> None:
    done = apply(lab, "stopped", SET0, RESTART)
    assert results(done) == [("set_value", "done", None), ("restart_service", "unchanged", None)]
    assert done.complete
    assert state(lab, "stopped")["policyagent"]["starts"] == 0


def test_an_absent_key_is_created(lab: RunningLab) -> None:
    create = Change(action=ActionKind.SET_VALUE, key=POLICYAGENT_KEY, before=None, data=0)
    done = apply(lab, "nokey", create)
    assert results(done) == [("set_value", "done", None)]
    assert state(lab, "nokey")["registry"][POLICYAGENT_KEY] == {VALUE_NAME: ["REG_DWORD", 0]}


@pytest.mark.parametrize(("name", "stage", "reason"), [("refused", Stage.CONNECT, "connect/refused"),
                                                       ("rejects", Stage.AUTH, "auth/unauthorized")])
def test_a_host_not_reached_is_untouched(lab: RunningLab, name: str, stage: Stage, reason: str) -> None:
    done = apply(lab, name, SET0, RESTART)
    assert done.observation.error is not None and done.observation.error.stage is stage
    assert {a.result for a in done.actions} == {Outcome.SKIPPED}
    assert {a.reason for a in done.actions} == {reason}


def test_a_change_outside_the_documented_value_is_refused() -> None:
    with pytest.raises(ValidationError):
        Change(action=ActionKind.SET_VALUE, key="SYSTEM\\CurrentControlSet\\Services\\Tcpip", data=0)
    with pytest.raises(ValidationError):
        Change(action=ActionKind.SET_VALUE, key=POLICYAGENT_KEY, data=4)
    with pytest.raises(ValidationError):
        Change(action=ActionKind.DELETE_VALUE, key=IPSEC_KEY,
               before=RegistryValue(name="Other", type="REG_DWORD", data=1))
