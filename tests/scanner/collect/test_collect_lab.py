"""collect_all/collect_host against the lab (real HTTP, real NTLM + MS-WSMV encryption, real TLS).

One lab run serves every case: each row of docs/domain.md#effective-mode through collect + assess, and every
fault the lab offers, each ending as its own reason within the host deadline.
"""

from __future__ import annotations

import subprocess
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
    OsInfo,
    OsSource,
    Scheme,
    Stage,
    Target,
)
from scanner.core.semantics import Integrity, OsFamily, assess
from scanner.engine.pool import collect_all
from tests.peers.lab import RunningLab, start_lab
from tests.support.cliproc import CLI, LAB_CREDS, REPO, cli_env

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
    # NT 6+ over NTLM: 2 handshake + 2 x GetDWORDValue; the OS version comes from the CHALLENGE.
    for name in ("dword0", "dword1", "absent", "key-absent", "dword3", "stray-win10", "https-ntlm"):
        assert results[name].requests == 4, name
        assert results[name].os is not None and results[name].os.source is OsSource.NTLM_CHALLENGE, name
    # NT 5.x (the service pack decides) and a CHALLENGE without VERSION: + the WQL Enumerate.
    for name in ("win2000", "xp-sp1", "xp-sp2-dword1", "hostile-caption"):
        assert results[name].requests == 5, name
        assert results[name].os is not None and results[name].os.source is OsSource.WMI, name
    assert results["https-basic"].requests == 3  # Basic: no handshake, no CHALLENGE, so WQL + 2
    assert results["sz"].requests == 6  # + EnumValues + GetStringValue for the non-DWORD value
    assert results["stray-2003"].requests == 7  # NT 5.2: WQL, and a REG_SZ stray: + 2
    assert results["fault-refuse"].requests == 0
    # 503 / a dropped keep-alive connection on the first WMI call: resent after a new handshake.
    assert results["retry-503"].requests == 2 + 1 + 2 + 2
    assert results["retry-drop"].requests == 2 + 1 + 2 + 2
    for name in ("retry-503", "retry-drop"):
        setting = assess(results[name])
        assert setting is not None and setting.effective_mode == 1, name


def test_os_facts_from_the_challenge_match_wmi(lab: RunningLab) -> None:
    from_challenge = collect_host(target(lab, "dword1"), CREDENTIALS, options(lab))
    from_wmi = collect_host(target(lab, "dword1"), CREDENTIALS, options(lab, read_os_always=True))
    assert from_challenge.os is not None and from_wmi.os is not None
    assert (from_challenge.requests, from_wmi.requests) == (4, 5)
    assert (from_challenge.os.version, from_challenge.os.build) == (from_wmi.os.version, from_wmi.os.build)
    assert (from_challenge.os.service_pack, from_challenge.os.caption) == (None, None)  # only WMI has them
    assert from_wmi.os.caption == "Microsoft Windows Server 2019 Standard"
    assert assess(from_challenge) == assess(from_wmi)


def test_os_facts_from_the_inventory_and_who_wins(lab: RunningLab) -> None:
    address, port, _ = lab.hosts["hostile-caption"]  # its CHALLENGE carries no VERSION
    known = Target(name="hostile-caption", address=address, port=port, os_version="10.0.19045")
    observation = collect_host(known, CREDENTIALS, options(lab))
    assert observation.requests == 4
    assert observation.os == OsInfo(version="10.0.19045", build=19045, source=OsSource.INVENTORY)
    nt5 = collect_host(known.model_copy(update={"os_version": "5.1.2600"}), CREDENTIALS, options(lab))
    assert nt5.requests == 5  # NT 5.x in the inventory: WMI decides the service pack
    assert nt5.os is not None and nt5.os.source is OsSource.WMI
    address, port, _ = lab.hosts["dword1"]  # Server 2019: the CHALLENGE says 10.0.17763
    stale = Target(name="dword1", address=address, port=port, os_version="6.1.7601")
    observation = collect_host(stale, CREDENTIALS, options(lab))
    assert observation.os is not None
    assert (observation.os.version, observation.os.source) == ("10.0.17763", OsSource.NTLM_CHALLENGE)


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


@pytest.mark.parametrize(
    ("name", "reason", "words"),
    [
        # docs/wire.md lists each shape and its public source.
        ("shape-quota-wmierror", "quota", "MSFT_WmiError 2150859174 (0x803381A6)"),
        ("fault-quota", "quota", "WSManFault 2150859174 (0x803381A6)"),
        ("fault-wmi-access-denied", "access_denied", "WSManFault 5 (0x00000005)"),
        ("shape-access-hresult", "access_denied", "WSManFault 2147942405 (0x80070005)"),
        ("shape-wmi-svc-denied", "access_denied", "MSFT_WmiError 2147749891 (0x80041003)"),
        ("shape-wmi-svc-denied-xp", "access_denied", "__ExtendedStatus 2147749891 (0x80041003)"),
        ("shape-wbem-denied", "access_denied", "MSFT_WmiError 2147749891"),
        ("fault-wmi-class", "wmi_class", "0x80338000"),
        ("fault-op-timeout", "operation_timeout", "0x80338029"),
        ("shape-selectors", "invalid_selectors", "0x8033803D"),
        ("shape-action", "not_supported", "0x80338013"),
        ("shape-400", "request_rejected", "HTTP 400: WSManFault 2150858817"),
        ("shape-503-quota", "quota", "HTTP 503: WSManFault 2150859174"),
        ("shape-handshake", "quota", "during authentication: WSManFault 2150859174"),
        ("shape-plain", "access_denied", "WSManFault 5"),
        ("shape-plain-400", "request_rejected", "HTTP 400: WSManFault 2150858817"),
    ],
)
def test_fault_shapes_end_to_end(
    scan: tuple[dict[str, Observation], float, list[Observation]], name: str, reason: str, words: str
) -> None:
    error = scan[0][name].error
    assert error is not None
    assert (error.stage, error.reason) == (Stage.COLLECT, reason), error
    assert words in error.message, error.message


def test_wrong_original_length_is_refused_by_the_host_in_clear(
    lab: RunningLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lab checks OriginalContent's Length against the decrypted length (MS-WSMV 2.2.9.1.1.2.2) and
    # refuses a mismatch with HTTP 400 and a fault in clear: read as that fault, not as bad_encryption.
    from scanner.collect.wsman import encryption

    monkeypatch.setattr(encryption, "original_length", lambda message, wrapped: len(message) + 1)
    observation = collect_host(target(lab, "dword1"), CREDENTIALS, options(lab))
    assert observation.error is not None
    assert (observation.error.stage, observation.error.reason) == (Stage.COLLECT, "request_rejected")
    assert observation.error.message.startswith("HTTP 400: WSManFault 2150858791 (0x80338027)")


def test_legacy_port_fallback_tries_the_winrm_1_1_port_when_refused(lab: RunningLab) -> None:
    refused = lab.hosts["fault-refuse"][1]
    address, listening, _ = lab.hosts["dword1"]
    host = Target(name="dword1", address=address, port=refused)
    # The lab cannot bind 80: map the refused port to the listening one, as 5985 maps to 80.
    ports = ((refused, listening),)
    plain = collect_host(host, CREDENTIALS, options(lab, fallback_ports=ports))
    assert plain.error is not None and plain.error.reason == "refused"  # off unless asked for
    fell_back = collect_host(host, CREDENTIALS, options(lab, legacy_port_fallback=True, fallback_ports=ports))
    assert fell_back.error is None
    assert fell_back.target.port == listening  # the report names the port actually used
    assert fell_back.requests == 4
    both = collect_host(
        host, CREDENTIALS, options(lab, legacy_port_fallback=True, fallback_ports=((refused, refused),))
    )
    assert both.error is not None and both.error.reason == "refused"
    assert both.error.message == f"connection refused on port {refused} and on the WinRM 1.1 port {refused}"
    assert both.target.port == refused


def test_tls_1_0_listener_needs_tls_min_version(lab: RunningLab) -> None:
    # The WinRM 1.1 persona on Server 2003 speaks TLS 1.0 only, as its SChannel does.
    legacy = target(lab, "https-basic-2003", AuthMethod.BASIC)
    refused = collect_host(legacy, CREDENTIALS, options(lab))
    assert refused.error is not None
    assert (refused.error.stage, refused.error.reason) == (Stage.TLS, "tls_handshake")
    lowered = collect_host(legacy, CREDENTIALS, options(lab, tls_min_version="1.0"))
    assert lowered.error is None, lowered.error
    setting = assess(lowered)
    assert setting is not None and (setting.os_family, setting.effective_mode) == (OsFamily.XP_2003, 1)
    # Verification stays on: the same lowered version without the CA is still refused.
    untrusted = collect_host(legacy, CREDENTIALS, options(lab, tls_min_version="1.0", ca_bundle=None))
    assert untrusted.error is not None and untrusted.error.reason == "tls_verify"


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


BLOCK_KERBEROS = """
import sys


class _NoKerberosExtra:
    # As if pyspnego's kerberos extra (python-gssapi, pykrb5) were not installed.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("gssapi", "krb5"):
            raise ImportError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoKerberosExtra())
"""


def test_kerberos_without_the_extra_says_how_to_install_it_and_contacts_no_host(
    lab: RunningLab, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_KERBEROS, encoding="utf-8")
    address, port, _ = lab.hosts["dword1"]
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(
        f"hosts:\n  - {{name: dword1, address: {address}, port: {port}, transport: kerberos}}\n", encoding="utf-8"
    )
    env = cli_env({**LAB_CREDS, "PYTHONPATH": f"{site}:{REPO}"})
    env["PYTHONPATH"] = f"{site}:{REPO}"  # cli_env sets the repository alone; the blocker goes first
    done = subprocess.run(
        [*CLI, "scan", "-i", str(inventory), "--no-history"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'natt-audit[kerberos]'" in done.stderr
    assert "gssapi" in done.stderr or "krb5" in done.stderr
    assert "no host was contacted" in done.stderr or "nothing was scanned" in done.stderr


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
