"""The ldap inventory source against the real Samba AD DC: paging, skips, OS facts, OU tags, TLS, Kerberos."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from scanner.core.models import AuthMethod, Scheme
from scanner.inputs.sources import HostEntry, SourceError, SourceKind, SourceResult
from scanner.inputs.sources.ldap import ENV_PASSWORD, LdapSource, LdapSourceConfig
from scanner.inputs.sources.ldapconn import Bind, Endpoint, open_session
from scanner.lab.tls import issue_certificates
from tests.ad.estate import ESCAPED_OU, ROOT_OU, estate, ldif
from tests.peers.samba_dc import LDAP_PORT, LDAPS_PORT, SambaDC

LDAP_SPN = "ldap/dc1.lab.test"


@pytest.fixture(scope="module")
def directory(samba_dc: SambaDC) -> int:
    """Load the estate's 1,206 computers (and their OUs and a group) once; return how many computers."""
    computers = estate()
    added = samba_dc.ldbadd(ldif(computers, dt.datetime.now(dt.UTC)))
    assert added > len(computers)
    # Windows DCs register ldap/<fqdn> for their LDAP service; Samba's provisioning registers HOST/ only.
    samba_dc.add_spn(LDAP_SPN, "DC1$")
    return len(computers)


@pytest.fixture(scope="module")
def admin_env(samba_dc: SambaDC) -> dict[str, str]:
    """Return an environment holding the Administrator's password for simple binds."""
    return {ENV_PASSWORD: samba_dc.admin_password}


def ldaps_config(samba_dc: SambaDC, **overrides: Any) -> LdapSourceConfig:
    """Return an LDAPS simple-bind configuration for the estate, with overrides."""
    data: dict[str, Any] = {
        "type": "ldap",
        "url": samba_dc.ldaps_url,
        "ca_file": str(samba_dc.ca_path),
        "auth": "simple",
        "username": f"Administrator@{samba_dc.realm}",
        "base": ROOT_OU,
        "page_size": 500,
    }
    data.update(overrides)
    return LdapSourceConfig.model_validate(data)


def by_name(result: SourceResult) -> dict[str, HostEntry]:
    """Return the result's hosts by name."""
    return {h.name: h for h in result.hosts}


def test_ldaps_pages_through_1206_computers_and_skips_disabled_stale_and_unnamed_ones(
    samba_dc: SambaDC, directory: int, admin_env: dict[str, str]
) -> None:
    config = ldaps_config(
        samba_dc,
        max_logon_age_days=90,
        groups=True,
        defaults={"scheme": "https", "transport": "kerberos", "site": "paris"},
    )
    result = LdapSource(config, environ=admin_env).resolve()

    assert directory == 1206
    assert result.stats["objects"] == 1206
    assert result.stats["pages"] == 3  # 500 + 500 + 206: paging happened
    assert result.skipped == {
        "disabled": 12,
        "stale": 10,
        "never_logged_on": 1,
        "no_dns_host_name": 1,
        "invalid_dns_host_name": 1,
    }
    assert len(result.hosts) == 1206 - 25
    hosts = by_name(result)
    assert "srv0049.lab.test" not in hosts  # disabled
    assert "ws0039.lab.test" not in hosts  # stale: 400 days
    assert "never.lab.test" not in hosts
    assert "bad_name.lab.test" not in hosts

    server = hosts["srv0001.lab.test"]
    assert server.tags == {"ou": "Sites/Paris/Servers", "ad-group:Tier0 Servers": "member"}
    assert server.os is not None and server.os.version == "10.0.17763"
    assert server.os.caption == "Windows Server 2019 Standard"
    assert server.provenance.source is SourceKind.LDAP
    assert server.provenance.origin == "ldaps://127.0.0.1:636"
    assert server.provenance.entry == f"CN=SRV0001,OU=Servers,OU=Paris,{ROOT_OU}"
    assert (server.scheme, server.transport, server.port, server.site) == (
        Scheme.HTTPS, AuthMethod.KERBEROS, None, "paris",
    )  # fmt: skip
    assert hosts["srv0010.lab.test"].tags == {"ou": "Sites/Paris/Servers"}  # not in the group

    target = server.to_target()
    assert (target.name, target.address, target.port, target.scheme) == (
        "srv0001.lab.test", "srv0001.lab.test", 5986, Scheme.HTTPS,
    )  # fmt: skip
    assert target.tags["site"] == "paris" and target.tags["ou"] == "Sites/Paris/Servers"
    assert target.source == f"ldaps://127.0.0.1:636 CN=SRV0001,OU=Servers,OU=Paris,{ROOT_OU}"
    assert len(result.targets()) == len(result.hosts)

    versions = {name: (h.os.version if h.os else None) for name, h in hosts.items()}
    assert versions["ws0001.lab.test"] == "10.0.19045"
    assert versions["wsf0001.lab.test"] == "6.1.7601"
    assert versions["tyo0001.lab.test"] == "5.2.3790"
    assert hosts["samba.lab.test"].os is not None
    assert (hosts["samba.lab.test"].os.caption, versions["samba.lab.test"]) == ("Samba", None)
    assert hosts["noos.lab.test"].os is None
    assert hosts["wsf0001.lab.test"].tags == {"ou": "Sites/Paris/Workstations/Floor 2"}
    assert hosts["rnd.lab.test"].tags == {"ou": "Sites/Tokyo/R&D, Lab\\/2"}  # '/' inside a name is escaped
    assert hosts["rnd.lab.test"].provenance.entry == f"CN=RND,{ESCAPED_OU}"


def test_without_an_age_limit_stale_and_never_seen_accounts_are_kept(
    samba_dc: SambaDC, directory: int, admin_env: dict[str, str]
) -> None:
    result = LdapSource(ldaps_config(samba_dc, page_size=1000), environ=admin_env).resolve()
    assert result.stats["pages"] == 2
    assert result.skipped == {"disabled": 12, "no_dns_host_name": 1, "invalid_dns_host_name": 1}
    assert len(result.hosts) == directory - 14
    assert {"ws0039.lab.test", "never.lab.test"} <= set(by_name(result))
    assert all(h.tags.keys() == {"ou"} for h in result.hosts)  # groups: false
    assert all(h.scheme is Scheme.HTTP and h.transport is AuthMethod.NTLM for h in result.hosts)


def test_the_filter_is_anded_with_computers_and_scope_one_stays_in_the_base(
    samba_dc: SambaDC, directory: int, admin_env: dict[str, str]
) -> None:
    workstations = f"OU=Workstations,OU=Paris,{ROOT_OU}"
    sub = LdapSource(ldaps_config(samba_dc, base=workstations), environ=admin_env).resolve()
    one = LdapSource(ldaps_config(samba_dc, base=workstations, scope="one"), environ=admin_env).resolve()
    win7 = LdapSource(ldaps_config(samba_dc, filter="(operatingSystemVersion=6.1*)"), environ=admin_env).resolve()
    # A filter matching users too still yields computers only: (objectCategory=computer) is ANDed.
    named = LdapSource(
        ldaps_config(samba_dc, base="DC=lab,DC=test", filter="(|(sAMAccountName=Administrator)(cn=TYO0007))"),
        environ=admin_env,
    ).resolve()

    assert len(sub.hosts) == 500
    assert len(one.hosts) == 400
    assert {h.os.version for h in win7.hosts if h.os} == {"6.1.7601"} and len(win7.hosts) == 100
    assert [h.name for h in named.hosts] == ["tyo0007.lab.test"]


class Recorder(socket.socket):
    """A socket that keeps every byte it sends and receives."""

    sent = bytearray()
    received = bytearray()

    def sendall(self, data: Any, flags: int = 0) -> None:  # type: ignore[override]
        Recorder.sent += bytes(data)
        super().sendall(data, flags)

    def recv(self, size: int, flags: int = 0) -> bytes:
        data = super().recv(size, flags)
        Recorder.received += data
        return data


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> type[Recorder]:
    """Record the bytes of every socket ldap3 opens during the test."""
    Recorder.sent, Recorder.received = bytearray(), bytearray()
    monkeypatch.setattr(socket, "socket", Recorder)
    return Recorder


def kerberos_config(samba_dc: SambaDC, **overrides: Any) -> LdapSourceConfig:
    """Return a Kerberos configuration over plain ldap:// to the DC's address."""
    data: dict[str, Any] = {
        "type": "ldap",
        "url": samba_dc.ldap_url,
        "server_name": samba_dc.fqdn,
        "auth": "kerberos",
        "base": f"OU=Tokyo,{ROOT_OU}",
    }
    data.update(overrides)
    return LdapSourceConfig.model_validate(data)


def test_kerberos_over_plain_ldap_binds_with_a_kinit_ticket_and_seals_every_frame(
    samba_dc: SambaDC, directory: int, ccache: Path, wire: type[Recorder]
) -> None:
    user = samba_dc.create_user("ldapreader", "Ldapreader-Passw0rd!")
    assert samba_dc.kinit(user.principal, user.password, ccache).ok

    result = LdapSource(kerberos_config(samba_dc, page_size=40)).resolve()

    assert result.stats["pages"] == 3  # 106 objects, 40 a page
    assert len(result.hosts) == 104
    assert result.stats["sealed_frames"] >= 3
    assert wire.sent and wire.received
    # Sealed: neither the filter we sent nor a host name the DC returned crosses the wire in clear.
    assert b"objectCategory" not in wire.sent and b"dNSHostName" not in wire.sent
    assert b"tyo0001" not in wire.received and b"Windows Server 2003" not in wire.received
    assert "ldap/dc1.lab.test@LAB.TEST" in klist_services(ccache)


def klist_services(ccache: Path) -> str:
    """Return klist's output for a ccache."""
    import subprocess

    return subprocess.run(
        ["klist", "-c", f"FILE:{ccache}"], capture_output=True, text=True, timeout=30, check=True
    ).stdout


def test_kerberos_without_a_ticket_is_a_clear_error(samba_dc: SambaDC, directory: int, ccache: Path) -> None:
    assert not ccache.exists()
    with pytest.raises(SourceError) as failed:
        LdapSource(kerberos_config(samba_dc)).resolve()
    assert failed.value.reason == "kerberos_no_ticket"
    assert "run kinit" in str(failed.value)


def test_kerberos_to_an_unknown_service_name_says_which_spn(samba_dc: SambaDC, directory: int, ccache: Path) -> None:
    user = samba_dc.create_user("ldapreader2", "Ldapreader2-Passw0rd!")
    assert samba_dc.kinit(user.principal, user.password, ccache).ok
    with pytest.raises(SourceError) as failed:
        LdapSource(kerberos_config(samba_dc, server_name="dc9.lab.test")).resolve()
    assert failed.value.reason == "kerberos_spn"
    assert "ldap/dc9.lab.test" in str(failed.value)


def test_ldaps_with_the_wrong_ca_fails_verification_with_a_clear_error(
    samba_dc: SambaDC, directory: int, admin_env: dict[str, str], tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    other.write_bytes(issue_certificates(["dc1.lab.test"]).ca)
    with pytest.raises(SourceError) as failed:
        LdapSource(ldaps_config(samba_dc, ca_file=str(other)), environ=admin_env).resolve()
    assert failed.value.reason == "tls_verify"
    message = str(failed.value)
    assert "did not verify against ca_file" in message and str(other) in message
    assert "certificate" in message and samba_dc.admin_password not in message


def test_ldaps_checks_the_certificate_name(samba_dc: SambaDC, directory: int, admin_env: dict[str, str]) -> None:
    # The DC's certificate names dc1.lab.test and 127.0.0.1; server_name is what it must carry.
    good = LdapSource(ldaps_config(samba_dc, server_name="dc1.lab.test", base=f"OU=Tokyo,{ROOT_OU}"), environ=admin_env)
    assert len(good.resolve().hosts) == 104
    with pytest.raises(SourceError) as failed:
        LdapSource(ldaps_config(samba_dc, server_name="dc2.lab.test"), environ=admin_env).resolve()
    assert failed.value.reason == "tls_verify"
    assert "mismatch" in str(failed.value).lower()


@pytest.fixture
def counting_bad_passwords(samba_dc: SambaDC) -> Iterator[None]:
    """Turn account lockout on (threshold 5) for one test, so the DC counts bad passwords; then off again."""
    samba_dc.set_lockout(threshold=5, duration_minutes=30, reset_minutes=30)
    try:
        yield
    finally:
        samba_dc.set_lockout(threshold=0, duration_minutes=30, reset_minutes=30)


def test_a_wrong_password_is_rejected_once_and_never_retried(
    samba_dc: SambaDC, directory: int, counting_bad_passwords: None
) -> None:
    user = samba_dc.create_user("ldapwrong", "Ldapwrong-Passw0rd!")
    config = ldaps_config(samba_dc, username=user.principal)
    with pytest.raises(SourceError) as failed:
        LdapSource(config, environ={ENV_PASSWORD: "Not-The-Passw0rd!"}).resolve()
    assert failed.value.reason == "bind_rejected"
    assert "invalid credentials" in str(failed.value) and "Not-The-Passw0rd!" not in str(failed.value)
    assert bad_password_count(samba_dc, user.name) == 1  # exactly one attempt reached the DC


def bad_password_count(samba_dc: SambaDC, name: str) -> int:
    """Return badPwdCount of an account, read over LDAPS as Administrator."""
    import ssl

    import ldap3

    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(samba_dc.ca_path))
    server = ldap3.Server(samba_dc.address, port=LDAPS_PORT, use_ssl=True, tls=tls, get_info=ldap3.NONE)
    conn = ldap3.Connection(server, f"Administrator@{samba_dc.realm}", samba_dc.admin_password, auto_bind=True)
    conn.search(samba_dc.base_dn, f"(sAMAccountName={name})", attributes=["badPwdCount"])
    count = int(conn.response[0]["raw_attributes"]["badPwdCount"][0])
    conn.unbind()
    return count


def test_a_base_dn_that_does_not_exist_is_named(samba_dc: SambaDC, directory: int, admin_env: dict[str, str]) -> None:
    with pytest.raises(SourceError) as failed:
        LdapSource(ldaps_config(samba_dc, base=f"OU=Nowhere,{ROOT_OU}"), environ=admin_env).resolve()
    assert failed.value.reason == "base_not_found"
    assert "OU=Nowhere" in str(failed.value)


def closed_port() -> int:
    """Return a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_closed_port_is_unreachable(samba_dc: SambaDC, directory: int, admin_env: dict[str, str]) -> None:
    port = closed_port()
    with pytest.raises(SourceError) as failed:
        LdapSource(ldaps_config(samba_dc, url=f"ldaps://127.0.0.1:{port}"), environ=admin_env).resolve()
    assert failed.value.reason == "unreachable"
    assert f"connection refused by 127.0.0.1 port {port}" in str(failed.value)


class Listener:
    """A loopback TCP listener that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def test_a_simple_bind_over_plain_ldap_is_refused_before_connecting(samba_dc: SambaDC, directory: int) -> None:
    listener = Listener()
    try:
        for url in (f"ldap://127.0.0.1:{listener.port}", f"ldap://127.0.0.1:{closed_port()}", samba_dc.ldap_url):
            with pytest.raises(ValidationError) as refused:
                ldaps_config(samba_dc, url=url, ca_file=None)
            assert "auth: simple over ldap:// would send the password in clear text" in str(refused.value)
        # Below the configuration too: the session refuses before opening a socket.
        endpoint = Endpoint(
            url=f"ldap://127.0.0.1:{listener.port}", host="127.0.0.1", port=listener.port, tls=False,
            server_name="127.0.0.1", ca_file=None, timeout=5,
        )  # fmt: skip
        bind = Bind(kerberos=False, username="Administrator@LAB.TEST", password=None)
        with pytest.raises(SourceError) as failed, open_session(endpoint, bind):
            pass
        assert failed.value.reason == "insecure"
    finally:
        listener.close()
    assert listener.accepted == 0
    assert LDAP_PORT == 389
