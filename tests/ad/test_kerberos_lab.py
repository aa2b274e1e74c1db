"""The lab's Kerberos acceptor and the scanner's Kerberos client, with tickets from the real Samba KDC.

Each host is read over WinRM with Kerberos (AP-REQ in `Authorization: Negotiate`, the host's AP-REP
on the 200, MS-WSMV encryption with the Kerberos wrap); `ntlm: disabled` and `cbt: strict` hosts
refuse what Windows refuses.
"""

from __future__ import annotations

import base64
import http.client
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import spnego
from pydantic import SecretStr
from spnego.channel_bindings import GssChannelBindings

from scanner.collect.collector import collect_host
from scanner.core.models import AuthMethod, CollectOptions, Credentials, Observation, Scheme, Stage, Target
from scanner.engine.pool import collect_all
from tests.peers.kerberos_lab import NO_SPN, NTLM_OFF, SCAN_PASSWORD, SCAN_USER, TLS_STRICT, KerberosLab, member_names

CREDENTIALS = Credentials(username=f"LAB\\{SCAN_USER}", password=SecretStr(SCAN_PASSWORD))


def target(krb_lab: KerberosLab, name: str, transport: AuthMethod, **extra: object) -> Target:
    address, port, scheme = krb_lab.lab.hosts[name]
    return Target(name=name, address=address, port=port, scheme=Scheme(scheme), transport=transport, **extra)


def options(krb_lab: KerberosLab, **extra: object) -> CollectOptions:
    ca = str(krb_lab.lab.ca) if krb_lab.lab.ca else None
    return CollectOptions.model_validate({"host_timeout": 10, "ca_bundle": ca, **extra})


def reason(observation: Observation) -> tuple[Stage, str] | None:
    error = observation.error
    return None if error is None else (error.stage, error.reason)


def test_every_member_host_is_read_over_kerberos_with_encryption(krb_lab: KerberosLab) -> None:
    targets = [target(krb_lab, name, AuthMethod.KERBEROS) for name in member_names()]
    results = collect_all(targets, CREDENTIALS, options(krb_lab), concurrency=8)
    assert [reason(o) for o in results] == [None] * len(targets), [o.error for o in results if o.error]
    # One request with the AP-REQ (the AP-REP comes back on its 200), the WQL OS read, two registry reads.
    assert {o.requests for o in results} == {4}
    assert all(o.os is not None and o.os.version == "10.0.19045" for o in results)


def test_an_ntlm_disabled_host_refuses_ntlm_and_is_read_over_negotiate(krb_lab: KerberosLab) -> None:
    refused = collect_host(target(krb_lab, NTLM_OFF, AuthMethod.NTLM), CREDENTIALS, options(krb_lab))
    assert reason(refused) == (Stage.AUTH, "ntlm_refused")
    assert refused.error is not None and "kerberos or negotiate" in refused.error.message
    assert refused.requests == 1  # refused at the NEGOTIATE: no credential was checked

    negotiated = collect_all(
        [target(krb_lab, NTLM_OFF, AuthMethod.NEGOTIATE)], CREDENTIALS, options(krb_lab, ntlm_fallback=False)
    )
    assert reason(negotiated[0]) is None


def test_an_unregistered_spn_is_spn_unknown_and_negotiate_falls_back_to_ntlm_only_if_allowed(
    krb_lab: KerberosLab,
) -> None:
    kerberos = collect_all([target(krb_lab, NO_SPN, AuthMethod.KERBEROS)], CREDENTIALS, options(krb_lab))
    assert reason(kerberos[0]) == (Stage.AUTH, "spn_unknown")
    assert kerberos[0].error is not None and f"HTTP/{NO_SPN}" in kerberos[0].error.message
    assert kerberos[0].requests == 0  # the KDC said no before anything was sent to the host

    fallback = collect_all([target(krb_lab, NO_SPN, AuthMethod.NEGOTIATE)], CREDENTIALS, options(krb_lab))
    assert reason(fallback[0]) is None
    assert fallback[0].os is not None and fallback[0].os.source.value == "ntlm_challenge"  # it was NTLM

    forbidden = collect_all(
        [target(krb_lab, NO_SPN, AuthMethod.NEGOTIATE)], CREDENTIALS, options(krb_lab, ntlm_fallback=False)
    )
    assert reason(forbidden[0]) == (Stage.AUTH, "spn_unknown")
    assert forbidden[0].error is not None and "--no-ntlm-fallback" in forbidden[0].error.message


def test_an_explicit_spn_is_asked_for_while_the_connection_goes_to_the_address(krb_lab: KerberosLab) -> None:
    # nospn.lab.test has no SPN of its own; naming a registered one gets a ticket the lab accepts.
    observation = collect_all(
        [target(krb_lab, NO_SPN, AuthMethod.KERBEROS, spn=f"HTTP/{member_names()[0]}")], CREDENTIALS, options(krb_lab)
    )
    assert reason(observation[0]) is None


# ---------------------------------------------------------------- channel binding (cbt: strict)


def logon_status(krb_lab: KerberosLab, name: str, client: Callable[[], object]) -> int:
    """Drive one logon by hand on one HTTPS connection; return the final HTTP status."""
    address, port, _ = krb_lab.lab.hosts[name]
    tls = ssl.create_default_context(cafile=str(krb_lab.lab.ca))
    conn = http.client.HTTPSConnection(address, port, context=tls, timeout=10)
    context: object = client()
    token = context.step()  # type: ignore[attr-defined]
    try:
        for _ in range(3):
            header = "Negotiate " + base64.b64encode(token).decode("ascii")
            conn.request("POST", "/wsman", b"", {"Authorization": header, "Content-Type": "application/soap+xml"})
            response = conn.getresponse()
            response.read()
            offered = response.getheader("WWW-Authenticate", "")
            if response.status != 401 or not offered.startswith("Negotiate "):
                return response.status
            token = context.step(base64.b64decode(offered.split(" ", 1)[1]))  # type: ignore[attr-defined]
        return response.status
    finally:
        conn.close()


def wrong_binding() -> GssChannelBindings:
    return GssChannelBindings(application_data=b"tls-server-end-point:" + bytes(32))


def test_a_strict_cbt_host_takes_a_bound_logon_over_both_transports(krb_lab: KerberosLab) -> None:
    for transport in (AuthMethod.KERBEROS, AuthMethod.NTLM):
        observations = collect_all([target(krb_lab, TLS_STRICT, transport)], CREDENTIALS, options(krb_lab))
        assert reason(observations[0]) is None, (transport, observations[0].error)


def test_a_strict_cbt_host_refuses_a_kerberos_logon_without_or_with_a_wrong_binding(krb_lab: KerberosLab) -> None:
    def kerberos(bindings: GssChannelBindings | None) -> Callable[[], object]:
        return lambda: spnego.client(
            f"{SCAN_USER}@{krb_lab.dc.realm}",
            SCAN_PASSWORD,
            hostname=TLS_STRICT,
            service="http",
            protocol="kerberos",
            channel_bindings=bindings,
        )

    assert logon_status(krb_lab, TLS_STRICT, kerberos(None)) == 401
    assert logon_status(krb_lab, TLS_STRICT, kerberos(wrong_binding())) == 401
    # The same client without binding is welcome where the host does not insist (an ordinary host over HTTP).
    assert logon_status_http(krb_lab, member_names()[0], kerberos(None)) == 200


def test_a_strict_cbt_host_refuses_an_ntlm_logon_without_or_with_a_wrong_binding(krb_lab: KerberosLab) -> None:
    def ntlm(bindings: GssChannelBindings | None) -> Callable[[], object]:
        return lambda: spnego.client(
            f"LAB\\{SCAN_USER}", SCAN_PASSWORD, hostname=TLS_STRICT, protocol="ntlm", channel_bindings=bindings
        )

    assert logon_status(krb_lab, TLS_STRICT, ntlm(None)) == 401
    assert logon_status(krb_lab, TLS_STRICT, ntlm(wrong_binding())) == 401


def logon_status_http(krb_lab: KerberosLab, name: str, client: Callable[[], object]) -> int:
    """Drive one Kerberos logon by hand over plain HTTP; return the HTTP status."""
    address, port, _ = krb_lab.lab.hosts[name]
    conn = http.client.HTTPConnection(address, port, timeout=10)
    token = client().step()  # type: ignore[attr-defined]
    try:
        header = "Negotiate " + base64.b64encode(token).decode("ascii")
        conn.request("POST", "/wsman", b"", {"Authorization": header, "Content-Type": "application/soap+xml"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()



def test_an_address_without_an_spn_goes_straight_to_ntlm_under_negotiate(
    krb_lab: KerberosLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = tmp_path / "trace.log"
    monkeypatch.setenv("KRB5_TRACE", str(trace))
    address, port, _ = krb_lab.lab.hosts[member_names()[1]]
    by_address = Target(name=address, address=address, port=port, transport=AuthMethod.NEGOTIATE)
    observations = collect_all([by_address], CREDENTIALS, options(krb_lab))
    assert reason(observations[0]) is None
    assert observations[0].os is not None and observations[0].os.source.value == "ntlm_challenge"
    assert "TGS request" not in trace.read_text(encoding="utf-8")  # no ticket was asked for an address
