"""collect_all/collect_host against the lab (real HTTP, real NTLM + MS-WSMV encryption, real TLS).

One lab run serves every case: each row of docs/domain.md#effective-mode through collect + assess, and every
fault the lab offers, each ending as its own reason within the host deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from scanner.collect.collector import collect_host
from scanner.core.models import (
    IPSEC_KEY,
    POLICYAGENT_KEY,
    VALUE_NAME,
    AuthMethod,
    CollectOptions,
    Credentials,
    Observation,
    Scheme,
    Stage,
    Target,
)
from scanner.core.semantics import Integrity, OsFamily, assess
from scanner.engine.pool import collect_all
from tests.peers.lab import RunningLab, start_lab

ESTATE = Path(__file__).parent / "data" / "collect_estate.yaml"
PASSWORD = "Lab-Passw0rd!"  # the lab's test account
CREDENTIALS = Credentials(username="LAB\\auditor", password=SecretStr(PASSWORD))
HOST_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    with start_lab(ESTATE, tmp_path_factory.mktemp("lab")) as running:
        yield running


def target(lab: RunningLab, name: str, transport: AuthMethod = AuthMethod.NTLM) -> Target:
    address, port, scheme = lab.hosts[name]
    return Target(name=name, address=address, port=port, scheme=Scheme(scheme), transport=transport)


def options(lab: RunningLab, **overrides: object) -> CollectOptions:
    values: dict[str, object] = {
        "host_timeout": HOST_TIMEOUT,
        "connect_timeout": 1.0,
        "ca_bundle": str(lab.ca) if lab.ca else None,
    }
    values.update(overrides)
    return CollectOptions.model_validate(values)


@pytest.fixture(scope="module")
def scan(lab: RunningLab) -> tuple[dict[str, Observation], float, list[Observation]]:
    targets = [
        target(lab, name, AuthMethod.BASIC if name.startswith("https-basic") else AuthMethod.NTLM)
        for name in sorted(lab.hosts)
    ]
    streamed: list[Observation] = []
    start = time.monotonic()
    results = collect_all(targets, CREDENTIALS, options(lab), concurrency=64, on_result=streamed.append)
    elapsed = time.monotonic() - start
    assert [o.target.name for o in results] == [t.name for t in targets]  # inventory order
    return {o.target.name: o for o in results}, elapsed, streamed


def test_one_result_per_host_within_the_deadline(
    lab: RunningLab, scan: tuple[dict[str, Observation], float, list[Observation]]
) -> None:
    results, elapsed, streamed = scan
    assert set(results) == set(lab.hosts)
    assert sorted(o.target.name for o in streamed) == sorted(results)
    # Trickle, black hole and slow hosts all end at the 2 s deadline, concurrently.
    assert elapsed < HOST_TIMEOUT + 2.5


@pytest.mark.parametrize(
    ("name", "family", "mode", "integrity", "raw_type", "raw_value"),
    [
        ("dword0", OsFamily.VISTA_PLUS, 0, Integrity.OK, "REG_DWORD", 0),
        ("dword1", OsFamily.VISTA_PLUS, 1, Integrity.OK, "REG_DWORD", 1),
        ("dword2", OsFamily.VISTA_PLUS, 2, Integrity.OK, "REG_DWORD", 2),
        ("absent", OsFamily.VISTA_PLUS, 0, Integrity.OK, None, None),
        ("key-absent", OsFamily.VISTA_PLUS, 0, Integrity.OK, None, None),
        ("dword3", OsFamily.VISTA_PLUS, "unknown", Integrity.INVALID_VALUE, "REG_DWORD", 3),
        ("dwordmax", OsFamily.VISTA_PLUS, "unknown", Integrity.INVALID_VALUE, "REG_DWORD", 4294967295),
        ("sz", OsFamily.VISTA_PLUS, 0, Integrity.INVALID_TYPE, "REG_SZ", " 2 "),
        ("expand-sz", OsFamily.VISTA_PLUS, 0, Integrity.INVALID_TYPE, "REG_EXPAND_SZ", "C:\\WINDOWS"),
        ("qword", OsFamily.VISTA_PLUS, 0, Integrity.INVALID_TYPE, "REG_QWORD", 2),
        ("binary", OsFamily.VISTA_PLUS, 0, Integrity.INVALID_TYPE, "REG_BINARY", "02000000"),
        ("multi-sz", OsFamily.VISTA_PLUS, 0, Integrity.INVALID_TYPE, "REG_MULTI_SZ", ["2", ""]),
        ("stray-win10", OsFamily.VISTA_PLUS, 0, Integrity.OK, None, None),
        ("stray-2003", OsFamily.XP_2003, 0, Integrity.OK, None, None),
        ("xp-sp2-dword1", OsFamily.XP_2003, 1, Integrity.OK, "REG_DWORD", 1),
        ("win2000", OsFamily.WIN2000, "not_applicable", Integrity.NOT_APPLICABLE, None, None),
        ("xp-sp1", OsFamily.XP_PRE_SP2, 2, Integrity.NOT_APPLICABLE, None, None),
        ("https-ntlm", OsFamily.VISTA_PLUS, 1, Integrity.OK, "REG_DWORD", 1),
        ("https-basic", OsFamily.VISTA_PLUS, 2, Integrity.OK, "REG_DWORD", 2),
    ],
)
def test_domain_section_2_rows(
    scan: tuple[dict[str, Observation], float, list[Observation]],
    name: str,
    family: OsFamily,
    mode: object,
    integrity: Integrity,
    raw_type: str | None,
    raw_value: object,
) -> None:
    observation = scan[0][name]
    assert observation.error is None, observation.error
    setting = assess(observation)
    assert setting is not None
    assert (setting.os_family, setting.effective_mode, setting.integrity) == (family, mode, integrity)
    assert (setting.raw_type, setting.raw_value) == (raw_type, raw_value)
    assert [k.key for k in observation.keys] == [IPSEC_KEY, POLICYAGENT_KEY]


def test_request_counts(scan: tuple[dict[str, Observation], float, list[Observation]]) -> None:
    results = scan[0]
    # Common case: 2 handshake + Enumerate + 2 x GetDWORDValue.
    for name in (
        "dword0",
        "dword1",
        "absent",
        "key-absent",
        "dword3",
        "stray-win10",
        "win2000",
        "https-ntlm",
    ):
        assert results[name].requests == 5, name
    assert results["https-basic"].requests == 3  # Basic has no handshake
    assert results["sz"].requests == 7  # + EnumValues + GetStringValue for the non-DWORD value
    assert results["fault-refuse"].requests == 0


def test_stored_name_and_strays(scan: tuple[dict[str, Observation], float, list[Observation]]) -> None:
    results = scan[0]
    sz = assess(results["sz"])
    assert sz is not None
    assert sz.value_name == "assumeudpencapsulationcontextonsendrule"
    assert not sz.name_canonical
    stray = assess(results["stray-win10"])
    assert stray is not None
    assert [(s.key, s.name, s.type, s.data) for s in stray.stray] == [(IPSEC_KEY, VALUE_NAME, "REG_DWORD", 2)]
    stray2003 = assess(results["stray-2003"])
    assert stray2003 is not None
    assert [(s.key, s.type, s.data) for s in stray2003.stray] == [(POLICYAGENT_KEY, "REG_SZ", "2")]
    win2000 = assess(results["win2000"])
    assert win2000 is not None
    assert [s.key for s in win2000.stray] == [IPSEC_KEY]
    key_absent = results["key-absent"].key(POLICYAGENT_KEY)
    absent = results["absent"].key(POLICYAGENT_KEY)
    assert key_absent is not None
    assert not key_absent.key_present
    assert absent is not None
    assert absent.key_present


def test_hostile_caption_arrives_verbatim(
    scan: tuple[dict[str, Observation], float, list[Observation]],
) -> None:
    observation = scan[0]["hostile-caption"]
    assert observation.error is None
    assert observation.os is not None
    assert observation.os.caption == "Windows \x1b[31m[bold red]PASS[/] \u202egnp.exe"


@pytest.mark.parametrize(
    ("name", "stage", "reason"),
    [
        ("acl-denied", Stage.COLLECT, "access_denied"),
        ("https-basic-reject", Stage.AUTH, "unauthorized"),
        ("fault-refuse", Stage.CONNECT, "refused"),
        ("fault-blackhole", Stage.TIMEOUT, "deadline"),
        ("fault-trickle", Stage.TIMEOUT, "deadline"),
        ("fault-auth-reject", Stage.AUTH, "unauthorized"),
        ("fault-wmi-access-denied", Stage.COLLECT, "access_denied"),
        ("fault-wmi-class", Stage.COLLECT, "wmi_class"),
        ("fault-op-timeout", Stage.COLLECT, "operation_timeout"),
        ("fault-quota", Stage.COLLECT, "quota"),
        ("fault-502", Stage.COLLECT, "http_502"),
        ("fault-reset", Stage.CONNECT, "reset"),
        ("fault-malformed", Stage.PARSE, "malformed_xml"),
        ("fault-xml-bomb", Stage.PARSE, "xml_forbidden"),
        ("fault-oversize", Stage.PARSE, "oversize"),
        ("fault-relatesto", Stage.PARSE, "relates_to"),
        ("fault-slow", Stage.TIMEOUT, "deadline"),
    ],
)
def test_faults(
    scan: tuple[dict[str, Observation], float, list[Observation]], name: str, stage: Stage, reason: str
) -> None:
    observation = scan[0][name]
    assert observation.error is not None
    assert (observation.error.stage, observation.error.reason) == (stage, reason), observation.error
    assert observation.os is None
    assert observation.keys == ()
    assert PASSWORD not in observation.model_dump_json()


def test_basic_over_http_refused_without_sending(lab: RunningLab) -> None:
    observation = collect_host(target(lab, "dword1", AuthMethod.BASIC), CREDENTIALS, options(lab))
    assert observation.error is not None
    assert (observation.error.stage, observation.error.reason) == (Stage.AUTH, "insecure_basic")
    assert observation.requests == 0


def test_wrong_password_is_unauthorized(lab: RunningLab) -> None:
    wrong = Credentials(username="LAB\\auditor", password=SecretStr("not-the-password"))
    observation = collect_host(target(lab, "dword1"), wrong, options(lab))
    assert observation.error is not None
    assert (observation.error.stage, observation.error.reason) == (Stage.AUTH, "unauthorized")
    assert observation.requests == 2
    assert "not-the-password" not in observation.model_dump_json()


def test_tls_untrusted_and_wrong_name(lab: RunningLab) -> None:
    untrusted = collect_host(target(lab, "https-ntlm"), CREDENTIALS, options(lab, ca_bundle=None))
    assert untrusted.error is not None
    assert untrusted.error.reason == "tls_verify"
    address, port, _ = lab.hosts["https-ntlm"]
    renamed = Target(name="not-the-cert-name", address=address, port=port, scheme=Scheme.HTTPS)
    wrong_name = collect_host(renamed, CREDENTIALS, options(lab))
    assert wrong_name.error is not None
    assert (wrong_name.error.stage, wrong_name.error.reason) == (Stage.TLS, "tls_verify")
    # Only an explicit option turns verification off; then the same host reads fine.
    insecure = collect_host(renamed, CREDENTIALS, options(lab, ca_bundle=None, verify_tls=False))
    assert insecure.error is None


def test_plain_http_to_tls_listener_fails_cleanly(lab: RunningLab) -> None:
    address, port, _ = lab.hosts["https-ntlm"]
    wrong = Target(name="https-ntlm", address=address, port=port, scheme=Scheme.HTTP)
    observation = collect_host(wrong, CREDENTIALS, options(lab))
    assert observation.error is not None
    assert observation.error.stage in (Stage.CONNECT, Stage.PARSE)


def test_kerberos_without_extra_is_transport_unavailable(lab: RunningLab) -> None:
    observation = collect_host(target(lab, "dword1", AuthMethod.KERBEROS), CREDENTIALS, options(lab))
    assert observation.error is not None
    try:
        import gssapi  # noqa: F401
    except ImportError:
        assert (observation.error.stage, observation.error.reason) == (Stage.AUTH, "transport_unavailable")
    else:
        assert observation.error.stage is Stage.AUTH


def test_stop_leaves_undispatched_hosts_unstarted(lab: RunningLab) -> None:
    targets = [target(lab, "dword1")] * 20
    stop = threading.Event()
    seen: list[Observation] = []

    def on_result(observation: Observation) -> None:
        seen.append(observation)
        stop.set()

    results = collect_all(targets, CREDENTIALS, options(lab), concurrency=2, on_result=on_result, stop=stop)
    # Only the hosts already in flight when stop was set finish (and are reported); none is started.
    assert 1 <= len(results) <= 2
    assert [o.target for o in seen] == [o.target for o in results]


def test_on_result_exception_is_reraised(lab: RunningLab) -> None:
    def boom(_observation: Observation) -> None:
        raise RuntimeError("sink failed")

    with pytest.raises(RuntimeError, match="sink failed"):
        collect_all([target(lab, "dword1")] * 3, CREDENTIALS, options(lab), concurrency=1, on_result=boom)


def test_streaming_keeps_nothing_but_reports_every_host(lab: RunningLab) -> None:
    targets = [target(lab, "dword0"), target(lab, "dword1"), target(lab, "absent")]
    streamed: list[Observation] = []
    kept = collect_all(targets, CREDENTIALS, options(lab), concurrency=2, on_result=streamed.append, keep=False)
    assert kept == []  # a streaming caller (scanner.engine.run) holds no observation list
    assert sorted(o.target.name for o in streamed) == ["absent", "dword0", "dword1"]
    assert all(o.error is None for o in streamed)
