"""Lab hosts that refuse NTLM (`ntlm: disabled`) or insist on the channel binding (`cbt: strict`), without a KDC.

The Kerberos side of both settings is tested against the real Samba KDC in tests/ad/test_kerberos_lab.py.
"""

from __future__ import annotations

import base64
import http.client
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import spnego

from scanner.lab.auth import Acceptor, AuthFailed, NtlmRefused, tls_server_end_point
from scanner.lab.tls import issue_certificates
from tests.peers.lab import RunningLab, start_lab

ESTATE = r"""
accounts:
  - {username: 'LAB\auditor', password: 'Lab-Passw0rd!'}
defaults: {os: win10, wmi_ms: 0}
hosts:
  - {name: ntlm-off, ntlm: disabled}
  - {name: ntlm-on}
  - {name: strict, scheme: https, cbt: strict}
"""
USER, PASSWORD = "LAB\\auditor", "Lab-Passw0rd!"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    workdir = tmp_path_factory.mktemp("lab-ntlm-policy")
    estate = workdir / "estate.yaml"
    estate.write_text(ESTATE, encoding="utf-8")
    with start_lab(estate, workdir) as running:
        yield running


def first_leg(lab: RunningLab, name: str, token: bytes) -> http.client.HTTPResponse:
    address, port, _ = lab.hosts[name]
    conn = http.client.HTTPConnection(address, port, timeout=10)
    header = "Negotiate " + base64.b64encode(token).decode("ascii")
    conn.request("POST", "/wsman", b"", {"Authorization": header, "Content-Type": "application/soap+xml"})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_an_ntlm_disabled_host_offers_negotiate_and_kerberos_and_refuses_ntlm_before_a_challenge(
    lab: RunningLab,
) -> None:
    for protocol in ("ntlm", "negotiate"):  # raw NTLMSSP, and NTLM inside SPNEGO
        token = spnego.client(USER, PASSWORD, hostname="ntlm-off", protocol=protocol).step()
        assert token is not None
        refused = first_leg(lab, "ntlm-off", token)
        assert refused.status == 401
        assert refused.msg.get_all("WWW-Authenticate") == ["Negotiate", "Kerberos"]  # no token: no CHALLENGE
    token = spnego.client(USER, PASSWORD, hostname="ntlm-on", protocol="ntlm").step()
    assert token is not None
    challenged = first_leg(lab, "ntlm-on", token)
    assert challenged.status == 401
    assert (challenged.getheader("WWW-Authenticate") or "").startswith("Negotiate ")  # the CHALLENGE


def test_the_strict_host_takes_ntlm_only_with_the_tls_channel_binding(lab: RunningLab) -> None:
    assert lab.ca is not None
    address, port, _ = lab.hosts["strict"]
    tls = ssl.create_default_context(cafile=str(lab.ca))

    def logon(with_binding: bool) -> int:
        conn = http.client.HTTPSConnection(address, port, context=tls, timeout=10)
        conn.connect()
        assert conn.sock is not None
        certificate = conn.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
        bindings = tls_server_end_point(certificate) if with_binding else None
        client = spnego.client(USER, PASSWORD, hostname="strict", protocol="ntlm", channel_bindings=bindings)
        token = client.step()
        status = 0
        for _ in range(2):
            assert token is not None
            header = "Negotiate " + base64.b64encode(token).decode("ascii")
            conn.request("POST", "/wsman", b"", {"Authorization": header, "Content-Type": "application/soap+xml"})
            response = conn.getresponse()
            response.read()
            status = response.status
            offered = response.getheader("WWW-Authenticate") or ""
            if status != 401 or not offered.startswith("Negotiate "):
                break
            token = client.step(base64.b64decode(offered.split(" ", 1)[1]))
        conn.close()
        return status

    assert logon(with_binding=True) == 200
    assert logon(with_binding=False) == 401


def test_the_acceptor_refuses_ntlm_and_an_unbound_logon_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    users = tmp_path / "ntlm-users"
    users.write_text("LAB:auditor:Lab-Passw0rd!\n", encoding="utf-8")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    client = spnego.client(USER, PASSWORD, protocol="ntlm")
    negotiate = client.step()
    assert negotiate is not None
    with pytest.raises(NtlmRefused):
        Acceptor(ntlm=False).step(negotiate)

    pem = issue_certificates(["strict"])
    der = ssl.PEM_cert_to_DER_cert(pem.cert.decode("ascii"))
    acceptor = Acceptor(bindings=tls_server_end_point(der))
    challenge = acceptor.step(negotiate)
    authenticate = client.step(challenge)
    assert authenticate is not None
    with pytest.raises(AuthFailed):
        acceptor.step(authenticate)
    assert not acceptor.complete
