"""Every lab fault, observed at the socket/HTTP level (and through pywinrm where that is what breaks)."""

from __future__ import annotations

import http.client
import socket
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from winrm.exceptions import InvalidCredentialsError, WinRMOperationTimeoutError, WSManFaultError

from tests.peers.lab import RunningLab, start_lab
from tests.support.labwire import PA, VALUE, RawSession, protocol, reg_request, relates_to

FAULTS = {
    "refuse": "refuse",
    "blackhole": "blackhole",
    "trickle": "trickle",
    "authreject": "auth-reject",
    "denied": "wmi-access-denied",
    "timeoutfault": "soap-fault:2150858793",
    "classfault": "soap-fault:2150858752",
    "quota": "quota",
    "proxy": "http-502-html",
    "reset": "reset",
    "malformed": "malformed-xml",
    "bomb": "xml-bomb",
    "oversize": "oversize",
    "relates": "wrong-relatesto",
    "slow": "slow:700",
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    work = tmp_path_factory.mktemp("labfaults")
    hosts = "\n".join(f"  - {{name: {n}, fault: '{f}'}}" for n, f in FAULTS.items())
    estate = work / "estate.yaml"
    estate.write_text(
        "accounts:\n  - {username: 'LAB\\auditor', password: 'Lab-Passw0rd!'}\n"
        "defaults: {wmi_ms: 0}\nhosts:\n" + hosts + "\n",
        encoding="utf-8",
    )
    with start_lab(estate, work) as running:
        yield running


def port(lab: RunningLab, name: str) -> int:
    return lab.hosts[name][1]


ANON = b"POST /wsman HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"


def test_inventory_lists_every_faulty_host(lab: RunningLab) -> None:
    assert set(lab.hosts) == set(FAULTS)


def test_refuse(lab: RunningLab) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port(lab, "refuse")), timeout=2).close()


def test_blackhole(lab: RunningLab) -> None:
    with socket.create_connection(("127.0.0.1", port(lab, "blackhole")), timeout=2) as s:
        s.sendall(ANON)
        s.settimeout(1.0)
        with pytest.raises(TimeoutError):
            s.recv(1)


def test_trickle(lab: RunningLab) -> None:
    with socket.create_connection(("127.0.0.1", port(lab, "trickle")), timeout=5) as s:
        s.sendall(ANON)
        assert s.recv(100) == b"H"  # the first byte comes at once, alone
        t0 = time.monotonic()
        assert s.recv(100) == b"T"
        assert 1.5 < time.monotonic() - t0 < 3.5  # then one byte every two seconds


def test_auth_reject(lab: RunningLab) -> None:
    s = RawSession(port(lab, "authreject"))
    r = s.authenticate()  # the challenge is sent; the right password is still refused
    assert r.status == 401
    assert r.getheader("Content-Length") == "0"
    p = protocol(lab.endpoint("authreject"))
    with pytest.raises(InvalidCredentialsError):
        p.send_message(reg_request(p, "GetDWORDValue", PA, VALUE))


def _fault_of(lab: RunningLab, name: str) -> WSManFaultError:
    p = protocol(lab.endpoint(name))
    with pytest.raises(WSManFaultError) as info:
        p.send_message(reg_request(p, "GetDWORDValue", PA, VALUE))
    assert info.value.code == 500
    return info.value


def test_wmi_access_denied(lab: RunningLab) -> None:
    err = _fault_of(lab, "denied")
    assert err.wsman_fault_code == 5
    assert err.fault_subcode == "w:AccessDenied"


def test_soap_fault_codes(lab: RunningLab) -> None:
    assert _fault_of(lab, "classfault").wsman_fault_code == 2150858752
    p = protocol(lab.endpoint("timeoutfault"))
    with pytest.raises(WinRMOperationTimeoutError):  # pywinrm maps 2150858793 itself
        p.send_message(reg_request(p, "GetDWORDValue", PA, VALUE))


def test_quota(lab: RunningLab) -> None:
    err = _fault_of(lab, "quota")
    assert err.wsman_fault_code == 2150859174
    assert err.fault_subcode == "w:QuotaLimit"


def test_http_502_html(lab: RunningLab) -> None:
    c = http.client.HTTPConnection("127.0.0.1", port(lab, "proxy"), timeout=5)
    c.request("POST", "/wsman", body=b"")
    r = c.getresponse()
    body = r.read()
    assert r.status == 502
    assert r.getheader("Content-Type") == "text/html"
    assert b"<h1>502 Bad Gateway</h1>" in body


def _read_until_reset(s: socket.socket) -> bytes:
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except ConnectionResetError:
        return got
    raise AssertionError("connection closed cleanly, expected RST")


def test_reset_after_headers(lab: RunningLab) -> None:
    with socket.create_connection(("127.0.0.1", port(lab, "reset")), timeout=5) as s:
        s.sendall(ANON)
        got = _read_until_reset(s)
        assert got.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Length: 4096" in got


def test_malformed_xml(lab: RunningLab) -> None:
    p = protocol(lab.endpoint("malformed"))
    reply = p.send_message(reg_request(p, "GetDWORDValue", PA, VALUE))  # decrypts fine
    with pytest.raises(ET.ParseError):
        ET.fromstring(reply)


def test_xml_bomb(lab: RunningLab) -> None:
    p = protocol(lab.endpoint("bomb"))
    reply = p.send_message(reg_request(p, "GetDWORDValue", PA, VALUE))
    assert len(reply) < 4096  # small on the wire...
    assert b"<!DOCTYPE" in reply
    assert b'<!ENTITY lol9 "&lol8;&lol8;' in reply


def test_oversize_is_streamed(lab: RunningLab) -> None:
    s = RawSession(port(lab, "oversize"))
    assert s.authenticate().status == 200
    p = protocol(lab.endpoint("oversize"))
    r = s.post(
        s.encrypt(reg_request(p, "GetDWORDValue", PA, VALUE).encode()),
        {"Content-Type": 'multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted"'},
    )
    assert r.status == 200
    assert r.getheader("Content-Length") == str(200 * 1024 * 1024)
    first = r.read(4 * 1024 * 1024)
    assert first.startswith(b"<s:Envelope")
    assert len(first) == 4 * 1024 * 1024
    s.conn.close()


def test_wrong_relates_to(lab: RunningLab) -> None:
    p = protocol(lab.endpoint("relates"))
    mid = uuid.uuid4()
    reply = p.send_message(reg_request(p, "GetDWORDValue", PA, VALUE, message_id=mid))
    got = relates_to(reply)
    assert got is not None
    assert got != f"uuid:{mid}"


def test_slow(lab: RunningLab) -> None:
    c = http.client.HTTPConnection("127.0.0.1", port(lab, "slow"), timeout=5)
    t0 = time.monotonic()
    c.request("POST", "/wsman", body=b"")
    r = c.getresponse()
    r.read()
    assert r.status == 401
    assert time.monotonic() - t0 >= 0.69
