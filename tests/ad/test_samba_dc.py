"""The Samba AD DC fixture is a real domain controller: Kerberos, lockout, SPNs, LDAPS and paged LDAP."""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import ldap3
import pytest
import spnego
import spnego.exceptions

from scanner.lab.tls import issue_certificates
from tests.peers.samba_dc import LDAP_PORT, LDAPS_PORT, LockoutPolicy, SambaDC

# MIT krb5 com_err codes for the KRB-ERROR codes of RFC 4120 section 7.5.9 (ERROR_TABLE_BASE_krb5 + code).
KDC_ERR_CLIENT_REVOKED = -1765328384 + 18
KDC_ERR_PREAUTH_FAILED = -1765328384 + 24
REVOKED = "Client's credentials have been revoked"
PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"  # RFC 2696


def klist(ccache: Path) -> str:
    """Return `klist` of a credential cache."""
    return subprocess.run(
        ["klist", "-c", f"FILE:{ccache}"], capture_output=True, text=True, timeout=30, check=True
    ).stdout


def ldaps(dc: SambaDC, ca: Path) -> ldap3.Server:
    """Return an ldap3 server for the DC's LDAPS port that verifies its certificate against ca."""
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(ca), version=ssl.PROTOCOL_TLS_CLIENT)
    return ldap3.Server(dc.address, port=LDAPS_PORT, use_ssl=True, tls=tls, get_info=ldap3.NONE)


@pytest.fixture
def lockout_policy(samba_dc: SambaDC) -> Iterator[LockoutPolicy]:
    """Set lockout after 3 bad passwords for one test; turn lockout off again afterwards."""
    policy = samba_dc.set_lockout(threshold=3, duration_minutes=30, reset_minutes=30)
    try:
        yield policy
    finally:
        samba_dc.set_lockout(threshold=0, duration_minutes=30, reset_minutes=30)


def test_kinit_with_the_right_password_gets_a_tgt_and_a_wrong_one_fails_preauthentication(
    samba_dc: SambaDC, ccache: Path
) -> None:
    user = samba_dc.create_user("kuser1", "Kuser1-Passw0rd!")

    good = samba_dc.kinit(user.principal, user.password, ccache)
    assert good.ok, good.stderr
    tickets = klist(ccache)
    assert "Default principal: kuser1@LAB.TEST" in tickets
    assert "krbtgt/LAB.TEST@LAB.TEST" in tickets

    bad = samba_dc.kinit(user.principal, "Wrong-Passw0rd!", ccache)
    assert not bad.ok
    assert bad.kdc_error == "Preauthentication failed"
    assert bad.kdc_error_code == KDC_ERR_PREAUTH_FAILED
    assert "Password incorrect" in bad.stderr


def test_three_bad_passwords_lock_the_account_until_it_is_unlocked(
    samba_dc: SambaDC, ccache: Path, lockout_policy: LockoutPolicy
) -> None:
    assert lockout_policy == LockoutPolicy(threshold=3, duration_minutes=30, reset_minutes=30)
    below = samba_dc.create_user("klock2", "Klock2-Passw0rd!")
    locked = samba_dc.create_user("klock3", "Klock3-Passw0rd!")

    for _ in range(2):  # below the threshold: still allowed in
        assert samba_dc.kinit(below.principal, "Wrong-Passw0rd!", ccache).kdc_error == "Preauthentication failed"
    assert samba_dc.kinit(below.principal, below.password, ccache).ok

    for _ in range(3):
        assert samba_dc.kinit(locked.principal, "Wrong-Passw0rd!", ccache).kdc_error == "Preauthentication failed"
    refused = samba_dc.kinit(locked.principal, locked.password, ccache)
    assert not refused.ok
    assert "revoked" in refused.stderr
    assert refused.kdc_error == REVOKED
    assert refused.kdc_error_code == KDC_ERR_CLIENT_REVOKED

    samba_dc.unlock_user(locked.name)
    again = samba_dc.kinit(locked.principal, locked.password, ccache)
    assert again.ok, again.stderr


def test_a_disabled_account_is_revoked(samba_dc: SambaDC, ccache: Path) -> None:
    user = samba_dc.create_user("kdisabled", "Kdisabled-Passw0rd!")
    assert samba_dc.kinit(user.principal, user.password, ccache).ok

    samba_dc.disable_user(user.name)
    refused = samba_dc.kinit(user.principal, user.password, ccache)
    assert not refused.ok
    assert "revoked" in refused.stderr
    assert refused.kdc_error_code == KDC_ERR_CLIENT_REVOKED


def test_an_spn_and_its_keytab_let_a_negotiate_acceptor_take_a_kerberos_ticket(
    samba_dc: SambaDC, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = samba_dc.create_user("http-lab", "Http-Lab-Passw0rd!")
    assert samba_dc.add_spn("HTTP/ws1.lab.test", service.name) == ["HTTP/ws1.lab.test"]
    keytab = samba_dc.export_keytab(tmp_path / "http.keytab", service.name)
    client_user = samba_dc.create_user("kclient", "Kclient-Passw0rd!")
    monkeypatch.setenv("KRB5_KTNAME", f"FILE:{keytab}")

    client = spnego.client(
        username=client_user.principal,
        password=client_user.password,
        hostname="ws1.lab.test",
        service="http",
        protocol="kerberos",
    )
    server = spnego.server(protocol="negotiate")
    request = client.step()
    assert request
    assert not client.complete  # mutual authentication: the client waits for the AP-REP

    reply = server.step(request)
    assert server.complete  # one round trip
    assert server.negotiated_protocol == "kerberos"
    assert server.client_principal == "kclient@LAB.TEST"
    assert reply, "the acceptor must return a mutual-authentication token"

    assert client.step(reply) is None
    assert client.complete
    assert server.unwrap(client.wrap(b"registry read").data).data == b"registry read"  # same session key

    unknown = spnego.client(
        username=client_user.principal,
        password=client_user.password,
        hostname="ws2.lab.test",  # no account has HTTP/ws2.lab.test
        service="http",
        protocol="kerberos",
    )
    with pytest.raises(spnego.exceptions.SpnegoError, match="Server not found in Kerberos database"):
        unknown.step()


def test_ldaps_certificate_verifies_against_the_fixture_ca_and_no_other(samba_dc: SambaDC, tmp_path: Path) -> None:
    context = ssl.create_default_context(cafile=str(samba_dc.ca_path))
    for name in ("127.0.0.1", "dc1.lab.test"):
        with (
            socket.create_connection((samba_dc.address, LDAPS_PORT), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            cert = tls.getpeercert()
            assert cert is not None
            sans = set(cert["subjectAltName"])
            assert ("DNS", "dc1.lab.test") in sans
            assert ("IP Address", "127.0.0.1") in sans

    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(issue_certificates(["dc1.lab.test"]).ca)
    strict = ssl.create_default_context(cafile=str(other_ca))
    with (
        socket.create_connection((samba_dc.address, LDAPS_PORT), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError) as failed,
    ):
        strict.wrap_socket(raw, server_hostname="127.0.0.1")
    assert failed.value.verify_code in (19, 20)  # self-signed certificate in chain / unable to get local issuer

    conn = ldap3.Connection(
        ldaps(samba_dc, samba_dc.ca_path), user=f"Administrator@{samba_dc.realm}", password=samba_dc.admin_password
    )
    assert conn.bind(), conn.result
    assert conn.search(samba_dc.base_dn, "(sAMAccountName=Administrator)"), conn.result  # AD denies this anonymously
    assert [e.entry_dn for e in conn.entries] == [f"CN=Administrator,CN=Users,{samba_dc.base_dn}"]
    conn.unbind()


def test_simple_bind_over_plain_ldap_is_refused_with_stronger_auth_required(samba_dc: SambaDC) -> None:
    plain = ldap3.Server(samba_dc.address, port=LDAP_PORT, get_info=ldap3.NONE)
    conn = ldap3.Connection(plain, user=f"Administrator@{samba_dc.realm}", password=samba_dc.admin_password)
    assert not conn.bind()
    assert conn.result["description"] == "strongerAuthRequired"
    assert conn.result["result"] == 8
    assert "Transport encryption required" in conn.result["message"]
    conn.unbind()

    secure = ldap3.Connection(
        ldaps(samba_dc, samba_dc.ca_path), user=f"Administrator@{samba_dc.realm}", password=samba_dc.admin_password
    )
    assert secure.bind(), secure.result  # the same credentials over TLS: the refusal was about the transport
    secure.unbind()


def computers_ldif(ou: str, count: int) -> str:
    """Return LDIF for an OU and `count` computer objects with the attributes an inventory reads."""
    records = [f"dn: {ou}\nobjectClass: organizationalUnit\n"]
    for i in range(count):
        records.append(
            f"dn: CN=INV{i:04d},{ou}\n"
            "objectClass: computer\n"
            f"sAMAccountName: INV{i:04d}$\n"
            f"dNSHostName: inv{i:04d}.lab.test\n"
            "operatingSystem: Windows Server 2019 Standard\n"
            "operatingSystemVersion: 10.0 (17763)\n"
            f"userAccountControl: {4098 if i % 4 == 0 else 4096}\n"
            f"lastLogonTimestamp: {133_500_000_000_000_000 + i}\n"
        )
    return "\n".join(records)


def test_1200_computers_loaded_with_ldbadd_all_come_back_through_a_paged_search(samba_dc: SambaDC) -> None:
    ou = f"OU=Inventory,{samba_dc.base_dn}"
    assert samba_dc.ldbadd(computers_ldif(ou, 1200)) == 1201

    conn = ldap3.Connection(
        ldaps(samba_dc, samba_dc.ca_path),
        user=f"Administrator@{samba_dc.realm}",
        password=samba_dc.admin_password,
        auto_bind=True,
    )
    pages: list[int] = []
    found: dict[str, dict[str, list[bytes]]] = {}
    cookie: bytes | None = None
    while True:
        assert conn.search(
            ou,
            "(objectClass=computer)",
            attributes=["dNSHostName", "operatingSystem", "operatingSystemVersion", "userAccountControl",
                        "lastLogonTimestamp"],
            paged_size=500,
            paged_cookie=cookie,
        ), conn.result  # fmt: skip
        entries = [r for r in conn.response if r["type"] == "searchResEntry"]
        pages.append(len(entries))
        for entry in entries:
            found[entry["raw_attributes"]["dNSHostName"][0].decode()] = entry["raw_attributes"]
        cookie = conn.result["controls"][PAGED_RESULTS_OID]["value"]["cookie"]
        if not cookie:
            break
    conn.unbind()

    assert pages == [500, 500, 200]
    assert set(found) == {f"inv{i:04d}.lab.test" for i in range(1200)}
    assert {raw["operatingSystem"][0] for raw in found.values()} == {b"Windows Server 2019 Standard"}
    assert sum(raw["userAccountControl"] == [b"4098"] for raw in found.values()) == 300
    assert found["inv0007.lab.test"]["lastLogonTimestamp"] == [b"133500000000000007"]
