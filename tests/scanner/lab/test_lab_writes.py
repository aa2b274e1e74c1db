"""The write and service methods, driven by natt-audit's own WMI client against the lab over NTLM + encryption.

What the lab must show (docs/lab.md, "Applying changes"): StdRegProv writes with Windows'
ReturnValues that persist for a rescan; Win32_Service PolicyAgent with State, StopService and
StartService; the value in force changes only when the service starts again; and the per-host
settings that make a write or a restart fail.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr

from scanner.collect.collector import read_key
from scanner.collect.wsman import wmi
from scanner.collect.wsman.auth import AuthMaterial
from scanner.collect.wsman.errors import CollectError
from scanner.collect.wsman.http import Deadline
from scanner.collect.wsman.protocol import new_protocol
from scanner.collect.wsman.transport import WsmanTransport
from scanner.core.models import IPSEC_KEY, POLICYAGENT_KEY, VALUE_NAME, CollectOptions, Credentials, Scheme, Target
from tests.peers.lab import RunningLab, start_lab
from tests.support.labstate import read_state, state_args

CREDENTIALS = Credentials(username="LAB\\auditor", password=SecretStr("Lab-Passw0rd!"))
ESTATE = r"""
accounts:
  - {username: 'LAB\auditor', password: 'Lab-Passw0rd!'}
defaults: {os: win10, wmi_ms: 0}
hosts:
  - name: w10
    registry:
      'SYSTEM\CurrentControlSet\Services\PolicyAgent':
        AssumeUDPEncapsulationContextOnSendRule: {type: REG_DWORD, data: 2}
  - name: w10-sz
    registry:
      'SYSTEM\CurrentControlSet\Services\PolicyAgent':
        assumeUDPencapsulationcontextonsendrule: {type: REG_SZ, data: '2'}
  - name: xp
    os: xp-sp3
    registry:
      'SYSTEM\CurrentControlSet\Services\IPsec': {AssumeUDPEncapsulationContextOnSendRule: {type: REG_DWORD, data: 2}}
      'SYSTEM\CurrentControlSet\Services\PolicyAgent':
        AssumeUDPEncapsulationContextOnSendRule: {type: REG_SZ, data: '1'}
  - name: nokey
    registry: {'SYSTEM\CurrentControlSet\Services\PolicyAgent': null}
  - name: readonly
    write_denied_keys: ['SYSTEM\CurrentControlSet\Services\PolicyAgent']
    registry:
      'SYSTEM\CurrentControlSet\Services\PolicyAgent':
        AssumeUDPEncapsulationContextOnSendRule: {type: REG_DWORD, data: 2}
  - name: slowstop
    policyagent: {stop_ms: 400, start_ms: 300}
  - name: nostart
    policyagent: {start_error: 14}
  - name: nostop
    policyagent: {stop_error: 2}
  - name: stopped
    policyagent: {state: Stopped}
  - {name: wmidenied, fault: wmi-access-denied}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    work = tmp_path_factory.mktemp("labwrites")
    estate = work / "estate.yaml"
    estate.write_text(ESTATE, encoding="utf-8")
    with start_lab(estate, work, extra_args=state_args(work)) as running:
        yield running


@contextmanager
def session(lab: RunningLab, name: str) -> Iterator[wmi.Sender]:
    """Yield an authenticated, encrypted WinRM session to one lab host."""
    address, port, scheme = lab.hosts[name]
    target = Target(name=name, address=address, port=port, scheme=Scheme(scheme))
    options = CollectOptions(host_timeout=10, connect_timeout=2)
    transport = WsmanTransport(target, AuthMaterial(CREDENTIALS), options, Deadline(10))
    try:
        transport.authenticate()
        yield new_protocol(target, options, transport)
    finally:
        transport.close()


def test_set_dword_persists_and_takes_effect_only_at_the_next_start(lab: RunningLab) -> None:
    with session(lab, "w10") as proto:
        assert wmi.set_dword(proto, POLICYAGENT_KEY, VALUE_NAME, 0) == 0
        assert read_key(proto, POLICYAGENT_KEY).value.data == 0  # type: ignore[union-attr]
    before = read_state(lab)["w10"]
    assert before["registry"][POLICYAGENT_KEY] == {VALUE_NAME: ["REG_DWORD", 0]}
    assert before["policyagent"] == {"state": "Running", "effective": ["REG_DWORD", 2], "starts": 0, "stops": 0}
    with session(lab, "w10") as proto:  # a new connection: the write outlived the first one
        assert wmi.service_state(proto, "PolicyAgent") == "Running"
        assert wmi.stop_service(proto, "PolicyAgent") == wmi.SVC_OK
        assert wmi.service_state(proto, "PolicyAgent") == "Stopped"
        assert wmi.stop_service(proto, "PolicyAgent") == wmi.SVC_NOT_ACTIVE
        assert wmi.start_service(proto, "PolicyAgent") == wmi.SVC_OK
        assert wmi.start_service(proto, "PolicyAgent") == wmi.SVC_ALREADY_RUNNING
        assert wmi.service_state(proto, "policyagent") == "Running"  # instance names match case-insensitively
    assert read_state(lab)["w10"]["policyagent"] == {
        "state": "Running", "effective": ["REG_DWORD", 0], "starts": 1, "stops": 1
    }


def test_set_dword_replaces_another_type_and_keeps_the_stored_spelling(lab: RunningLab) -> None:
    with session(lab, "w10-sz") as proto:
        assert wmi.set_dword(proto, POLICYAGENT_KEY, VALUE_NAME, 0) == 0
    assert read_state(lab)["w10-sz"]["registry"][POLICYAGENT_KEY] == {
        "assumeUDPencapsulationcontextonsendrule": ["REG_DWORD", 0]
    }


def test_delete_value_then_not_found(lab: RunningLab) -> None:
    with session(lab, "xp") as proto:
        assert wmi.delete_value(proto, POLICYAGENT_KEY, VALUE_NAME.lower()) == 0  # names match case-insensitively
        assert wmi.delete_value(proto, POLICYAGENT_KEY, VALUE_NAME) == 2
        assert read_key(proto, POLICYAGENT_KEY).value is None
        assert wmi.delete_value(proto, "SYSTEM\\CurrentControlSet\\Services\\Nope", VALUE_NAME) == 2
    registry = read_state(lab)["xp"]["registry"]
    assert registry[POLICYAGENT_KEY] == {}
    assert registry[IPSEC_KEY] == {VALUE_NAME: ["REG_DWORD", 2]}  # the other key untouched


def test_set_dword_needs_the_key_and_create_key_makes_it(lab: RunningLab) -> None:
    with session(lab, "nokey") as proto:
        assert wmi.set_dword(proto, POLICYAGENT_KEY, VALUE_NAME, 0) == 2
        assert wmi.create_key(proto, POLICYAGENT_KEY) == 0
        assert wmi.create_key(proto, POLICYAGENT_KEY) == 0  # exists: still 0
        assert wmi.set_dword(proto, POLICYAGENT_KEY, VALUE_NAME, 0) == 0
    assert read_state(lab)["nokey"]["registry"][POLICYAGENT_KEY] == {VALUE_NAME: ["REG_DWORD", 0]}


def test_a_write_denied_key_answers_5_and_keeps_its_value(lab: RunningLab) -> None:
    with session(lab, "readonly") as proto:
        assert wmi.set_dword(proto, POLICYAGENT_KEY, VALUE_NAME, 0) == wmi.RV_ACCESS_DENIED
        assert wmi.delete_value(proto, POLICYAGENT_KEY, VALUE_NAME) == wmi.RV_ACCESS_DENIED
        assert read_key(proto, POLICYAGENT_KEY).value.data == 2  # type: ignore[union-attr]  # still readable
    assert read_state(lab)["readonly"]["registry"][POLICYAGENT_KEY] == {VALUE_NAME: ["REG_DWORD", 2]}


def test_pending_states_settle_after_their_time(lab: RunningLab) -> None:
    with session(lab, "slowstop") as proto:
        assert wmi.stop_service(proto, "PolicyAgent") == 0
        assert wmi.service_state(proto, "PolicyAgent") == "Stop Pending"
        assert wmi.start_service(proto, "PolicyAgent") != 0  # not while it is stopping
        time.sleep(0.5)
        assert wmi.service_state(proto, "PolicyAgent") == "Stopped"
        assert wmi.start_service(proto, "PolicyAgent") == 0
        assert wmi.service_state(proto, "PolicyAgent") == "Start Pending"
        time.sleep(0.4)
        assert wmi.service_state(proto, "PolicyAgent") == "Running"


def test_service_faults_from_the_estate(lab: RunningLab) -> None:
    with session(lab, "nostart") as proto:
        assert wmi.stop_service(proto, "PolicyAgent") == 0
        assert wmi.start_service(proto, "PolicyAgent") == 14
        assert wmi.service_state(proto, "PolicyAgent") == "Stopped"
    assert wmi.service_return(14) == "14 (service disabled)"
    with session(lab, "nostop") as proto:
        assert wmi.stop_service(proto, "PolicyAgent") == wmi.SVC_ACCESS_DENIED
        assert wmi.service_state(proto, "PolicyAgent") == "Running"
    assert read_state(lab)["stopped"]["policyagent"]["effective"] is None  # never started: nothing read


def test_instance_and_selector_errors_are_classified(lab: RunningLab) -> None:
    with session(lab, "w10") as proto:
        with pytest.raises(CollectError) as missing:
            wmi.service_state(proto, "NoSuchService")
        assert missing.value.reason == "wmi_class"
        with pytest.raises(CollectError) as method:
            wmi.call(
                proto,
                f"{wmi.WIN32_SERVICE}/PauseService",
                wmi.WIN32_SERVICE,
                {"p:PauseService_INPUT": {"@xmlns:p": wmi.WIN32_SERVICE}},
                selectors=(("Name", "PolicyAgent"),),
            )
        assert method.value.reason == "not_supported"


def test_estate_wmi_faults_reach_the_service_methods_too(lab: RunningLab) -> None:
    with session(lab, "wmidenied") as proto:
        for call in (wmi.stop_service, wmi.start_service, wmi.service_state):
            with pytest.raises(CollectError) as denied:
                call(proto, "PolicyAgent")
            assert denied.value.reason == "access_denied"
        with pytest.raises(CollectError) as write:
            wmi.set_dword(proto, POLICYAGENT_KEY, VALUE_NAME, 0)
        assert write.value.reason == "access_denied"
    assert read_state(lab)["wmidenied"]["policyagent"]["stops"] == 0


def test_the_state_file_is_written_at_exit_too(tmp_path: Path) -> None:
    estate = tmp_path / "estate.yaml"
    estate.write_text("accounts: [{username: 'LAB\\auditor', password: 'x'}]\nhosts: [{name: one}]\n", encoding="utf-8")
    out = tmp_path / "state.json"
    with start_lab(estate, tmp_path / "lab", extra_args=["--state-out", str(out)]):
        pass
    assert json.loads(out.read_text(encoding="utf-8"))["hosts"]["one"]["policyagent"]["state"] == "Running"
