"""Fidelity of the lab, proved by driving pywinrm (and a hand-driven client) against it."""

from __future__ import annotations

import base64
import http.client
import ssl
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
import requests
import winrm
from winrm.exceptions import InvalidCredentialsError, WinRMTransportError, WSManFaultError

from tests.peers.lab import RunningLab, start_lab
from tests.support.labwire import (
    IPSEC,
    NS,
    OS_URI,
    PA,
    REG,
    REG_CIMV2,
    USER,
    VALUE,
    RawSession,
    enumerate_request,
    get_request,
    protocol,
    pull_request,
    reg_call,
    reg_request,
    relates_to,
)

ESTATE = r"""
accounts:
  - {username: 'LAB\auditor', password: 'Lab-Passw0rd!'}
defaults: {os: win10, wmi_ms: 0}
hosts:
  - name: w10
    registry:
      'SYSTEM\CurrentControlSet\Services\PolicyAgent':
        AssumeUDPEncapsulationContextOnSendRule: {type: REG_DWORD, data: 2}
        Sz: {type: REG_SZ, data: "2"}
        Exp: {type: REG_EXPAND_SZ, data: '%SystemRoot%\system32'}
        Multi: {type: REG_MULTI_SZ, data: [a, b, c]}
        Bin: {type: REG_BINARY, data: '0201ff'}
        Q: {type: REG_QWORD, data: 18446744073709551615}
        Max: {type: REG_DWORD, data: 4294967295}
      'SYSTEM\CurrentControlSet\Services\PolicyAgent\Oakley': {}
  - name: lower
    registry:
      'SYSTEM\CurrentControlSet\Services\PolicyAgent':
        assumeudpencapsulationcontextonsendrule: {type: REG_DWORD, data: 1}
  - name: denied
    os: '2019'
    denied_keys: ['SYSTEM\CurrentControlSet\Services\PolicyAgent']
  - {name: nokey, registry: {'SYSTEM\CurrentControlSet\Services\PolicyAgent': null}}
  - name: xp
    os: xp-sp3
    registry:
      'SYSTEM\CurrentControlSet\Services\IPsec':
        AssumeUDPEncapsulationContextOnSendRule: {type: REG_DWORD, data: 1}
  - {name: tls, os: '2022', scheme: https, tags: {role: gw}}
  - {name: slowlink, latency_ms: 300}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    work = tmp_path_factory.mktemp("labwire")
    estate = work / "estate.yaml"
    estate.write_text(ESTATE, encoding="utf-8")
    with start_lab(estate, work) as running:
        yield running


def rv(out: dict[str, list[str]]) -> int:
    return int(out["ReturnValue"][0])


# ---------------------------------------------------------------- StdRegProv


def test_get_dword_success_and_codes(lab: RunningLab) -> None:
    p = protocol(lab.endpoint("w10"))
    out = reg_call(p, "GetDWORDValue", PA, VALUE)
    assert rv(out) == 0
    assert out["uValue"] == ["2"]
    assert reg_call(p, "GetDWORDValue", PA, "Max")["uValue"] == ["4294967295"]  # unsigned, never -1
    assert rv(reg_call(p, "GetDWORDValue", PA, "Nope")) == 1  # value missing
    assert "uValue" not in reg_call(p, "GetDWORDValue", PA, "Nope")
    assert rv(reg_call(p, "GetDWORDValue", IPSEC, VALUE)) == 2  # key missing on Windows 10
    assert rv(reg_call(p, "GetDWORDValue", PA, "Sz")) == 2147749893  # type mismatch
    assert rv(reg_call(p, "GetDWORDValue", PA, "Q")) == 2147749893


def test_lookups_are_case_insensitive(lab: RunningLab) -> None:
    p = protocol(lab.endpoint("w10"))
    out = reg_call(p, "GetDWORDValue", PA.upper(), VALUE.lower())
    assert rv(out) == 0
    assert out["uValue"] == ["2"]


def test_other_get_methods(lab: RunningLab) -> None:
    p = protocol(lab.endpoint("w10"))
    assert reg_call(p, "GetStringValue", PA, "Sz")["sValue"] == ["2"]
    assert reg_call(p, "GetExpandedStringValue", PA, "Exp")["sValue"] == ["C:\\WINDOWS\\system32"]
    assert rv(reg_call(p, "GetStringValue", PA, "Exp")) == 2147749893
    assert reg_call(p, "GetMultiStringValue", PA, "Multi")["sValue"] == ["a", "b", "c"]
    assert reg_call(p, "GetBinaryValue", PA, "Bin")["uValue"] == ["2", "1", "255"]
    assert reg_call(p, "GetQWORDValue", PA, "Q")["uValue"] == ["18446744073709551615"]


def test_enum_values_returns_stored_spelling_and_types(lab: RunningLab) -> None:
    out = reg_call(protocol(lab.endpoint("lower")), "EnumValues", PA)
    assert rv(out) == 0
    assert out["sNames"] == ["assumeudpencapsulationcontextonsendrule"]
    assert out["Types"] == ["4"]
    out = reg_call(protocol(lab.endpoint("w10")), "EnumValues", PA)
    assert dict(zip(out["sNames"], out["Types"], strict=True)) == {
        VALUE: "4",
        "Sz": "1",
        "Exp": "2",
        "Multi": "7",
        "Bin": "3",
        "Q": "11",
        "Max": "4",
    }


def test_enum_values_of_empty_key_has_no_arrays(lab: RunningLab) -> None:
    out = reg_call(protocol(lab.endpoint("nokey")), "EnumValues", "SYSTEM\\CurrentControlSet\\Services")
    assert out == {"ReturnValue": ["0"]}


def test_enum_key(lab: RunningLab) -> None:
    p = protocol(lab.endpoint("w10"))
    assert reg_call(p, "EnumKey", PA)["sNames"] == ["Oakley"]
    assert "PolicyAgent" in reg_call(p, "EnumKey", "SYSTEM\\CurrentControlSet\\Services")["sNames"]
    assert rv(reg_call(p, "EnumKey", PA + "\\Missing")) == 2


def test_key_absent_and_access_denied(lab: RunningLab) -> None:
    assert rv(reg_call(protocol(lab.endpoint("nokey")), "GetDWORDValue", PA, VALUE)) == 2
    assert rv(reg_call(protocol(lab.endpoint("denied")), "GetDWORDValue", PA, VALUE)) == 5
    assert rv(reg_call(protocol(lab.endpoint("denied")), "EnumValues", PA)) == 5


def test_root_cimv2_stdregprov_only_on_vista_and_later(lab: RunningLab) -> None:
    out = reg_call(protocol(lab.endpoint("w10")), "GetDWORDValue", PA, VALUE, resource=REG_CIMV2)
    assert out["uValue"] == ["2"]
    xp = protocol(lab.endpoint("xp"))
    assert reg_call(xp, "GetDWORDValue", IPSEC, VALUE)["uValue"] == ["1"]
    with pytest.raises(WSManFaultError) as info:
        reg_call(xp, "GetDWORDValue", IPSEC, VALUE, resource=REG_CIMV2)
    assert info.value.code == 500
    assert info.value.wsman_fault_code == 2150858752
    assert info.value.wmierror_code == 2147749904


# ---------------------------------------------------------------- WQL, Get, Identify


def _os_fields(xml: bytes) -> ET.Element:
    items = ET.fromstring(xml).find("s:Body/n:EnumerateResponse/w:Items", NS)
    assert items is not None
    (item,) = list(items)
    return item


def test_wql_select_star_optimized(lab: RunningLab) -> None:
    p = protocol(lab.endpoint("w10"))
    xml = p.send_message(enumerate_request(p, "SELECT * FROM Win32_OperatingSystem"))
    root = ET.fromstring(xml)
    assert root.find("s:Body/n:EnumerateResponse/w:EndOfSequence", NS) is not None
    item = _os_fields(xml)
    assert item.tag == f"{{{OS_URI}}}Win32_OperatingSystem"
    assert item.findtext("os:Version", namespaces=NS) == "10.0.19045"
    assert item.findtext("os:BuildNumber", namespaces=NS) == "19045"
    assert item.findtext("os:ServicePackMajorVersion", namespaces=NS) == "0"
    assert item.findtext("os:Caption", namespaces=NS) == "Microsoft Windows 10 Enterprise"
    assert item.findtext("os:OSArchitecture", namespaces=NS) == "64-bit"
    csd = item.find("os:CSDVersion", NS)
    assert csd is not None
    assert csd.get(f"{{{NS['xsi']}}}nil") == "true"
    boot = item.findtext("os:LastBootUpTime/cim:Datetime", namespaces=NS)
    assert boot is not None
    assert boot[:4].isdigit()
    assert "T" in boot


def test_wql_field_list_gives_xml_fragment_sorted(lab: RunningLab) -> None:
    p = protocol(lab.endpoint("xp"))
    xml = p.send_message(
        enumerate_request(
            p, "SELECT Version, ServicePackMajorVersion, BuildNumber, CSDVersion FROM Win32_OperatingSystem"
        )
    )
    frag = _os_fields(xml)
    assert frag.tag == f"{{{NS['w']}}}XmlFragment"
    assert [c.tag for c in frag] == ["BuildNumber", "CSDVersion", "ServicePackMajorVersion", "Version"]
    assert [c.text for c in frag] == ["2600", "Service Pack 3", "3", "5.1.2600"]


def test_wql_without_optimize_then_pull(lab: RunningLab) -> None:
    p = protocol(lab.endpoint("w10"))
    xml = p.send_message(enumerate_request(p, "SELECT * FROM Win32_OperatingSystem", optimize=False))
    root = ET.fromstring(xml)
    assert root.find("s:Body/n:EnumerateResponse/w:Items", NS) is None
    ctx = root.findtext("s:Body/n:EnumerateResponse/n:EnumerationContext", namespaces=NS)
    assert ctx
    assert ctx.startswith("uuid:")
    pulled = ET.fromstring(p.send_message(pull_request(p, ctx)))
    assert pulled.find("s:Body/n:PullResponse/n:EndOfSequence", NS) is not None
    assert pulled.findtext(
        "s:Body/n:PullResponse/n:Items/os:Win32_OperatingSystem/os:Version", namespaces=NS
    ) == ("10.0.19045")
    with pytest.raises(WSManFaultError):  # the context is used up
        p.send_message(pull_request(p, ctx))


def test_wql_unknown_class_faults(lab: RunningLab) -> None:
    p = protocol(lab.endpoint("w10"))
    with pytest.raises(WSManFaultError) as info:
        p.send_message(enumerate_request(p, "SELECT * FROM Win32_Nope"))
    assert info.value.wsman_fault_code == 2150858752


def test_get_singleton(lab: RunningLab) -> None:
    p = protocol(lab.endpoint("xp"))
    root = ET.fromstring(p.send_message(get_request(p)))
    assert root.findtext("s:Body/os:Win32_OperatingSystem/os:CSDVersion", namespaces=NS) == "Service Pack 3"
    assert root.find("s:Body/os:Win32_OperatingSystem/os:OSArchitecture", NS) is None  # added in Vista


IDENTIFY = (
    b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
    b'xmlns:wsmid="http://schemas.dmtf.org/wbem/wsman/identity/1/wsmanidentity.xsd">'
    b"<s:Header/><s:Body><wsmid:Identify/></s:Body></s:Envelope>"
)


def test_identify_unauthenticated_and_authenticated(lab: RunningLab) -> None:
    _, _port, _ = lab.hosts["w10"]
    r = requests.post(
        lab.endpoint("w10"),
        data=IDENTIFY,
        timeout=10,
        headers={"WSMANIDENTIFY": "unauthenticated", "Content-Type": "application/soap+xml;charset=UTF-8"},
    )
    assert r.status_code == 200
    assert b"<wsmid:ProductVendor>Microsoft Corporation</wsmid:ProductVendor>" in r.content
    assert b"OS: 0.0.0" in r.content  # no OS details to anonymous callers
    r = requests.post(lab.endpoint("w10"), data=IDENTIFY, timeout=10)
    assert r.status_code == 401  # without the header, Identify needs authentication too
    p = protocol(lab.endpoint("w10"))
    assert b"OS: 10.0.19045 SP: 0.0" in p.send_message(IDENTIFY.decode())


# ---------------------------------------------------------------- faults, RelatesTo


def test_relates_to_echoes_message_id(lab: RunningLab) -> None:
    p = protocol(lab.endpoint("w10"))
    mid = uuid.uuid4()
    xml = p.send_message(reg_request(p, "GetDWORDValue", PA, VALUE, message_id=mid))
    assert relates_to(xml) == f"uuid:{mid}"
    with pytest.raises(WSManFaultError) as info:
        p.send_message(
            reg_request(
                p, "GetDWORDValue", PA, VALUE, resource=REG.replace("default", "nosuch"), message_id=mid
            )
        )
    assert relates_to(info.value.response.encode()) == f"uuid:{mid}"


def test_fault_shape(lab: RunningLab) -> None:
    p = protocol(lab.endpoint("w10"))
    with pytest.raises(WSManFaultError) as info:
        p.send_message(enumerate_request(p, "SELECT Nope FROM Win32_OperatingSystem"))
    err = info.value
    assert err.code == 500
    assert err.fault_code == "s:Sender"
    assert err.fault_subcode
    root = ET.fromstring(err.response)
    wf = root.find("s:Body/s:Fault/s:Detail/f:WSManFault", NS)
    assert wf is not None
    assert wf.get("Code") == str(err.wsman_fault_code)
    assert root.find("s:Body/s:Fault/s:Detail/f:WSManFault/f:Message/f:ProviderFault", NS) is not None


# ---------------------------------------------------------------- HTTP and auth


def test_anonymous_post_gets_401_with_offers(lab: RunningLab) -> None:
    _, port, _ = lab.hosts["w10"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/wsman", body=b"", headers={"Content-Length": "0"})
    r = conn.getresponse()
    assert r.status == 401
    assert r.read() == b""
    assert r.getheader("Content-Length") == "0"
    assert r.getheader("Server") == "Microsoft-HTTPAPI/2.0"
    offers = [v for k, v in r.getheaders() if k.lower() == "www-authenticate"]
    assert offers == ["Negotiate", "NTLM"]
    conn.request("GET", "/wsman")
    r = conn.getresponse()
    r.read()
    assert r.status == 405  # same connection: keep-alive after a 401
    conn.request("POST", "/other", body=b"x")
    r = conn.getresponse()
    r.read()
    assert r.status == 404


def test_keep_alive_preemptive_negotiate_and_encrypted_headers(lab: RunningLab) -> None:
    _, port, _ = lab.hosts["w10"]
    s = RawSession(port)
    first = s.authenticate()
    assert first.status == 200  # pywinrm's empty encryption set-up POST
    p = protocol(lab.endpoint("w10"))  # only used to build envelopes
    for _ in range(3):
        r, xml = s.send(reg_request(p, "GetDWORDValue", PA, VALUE))
        assert r.status == 200
        assert r.getheader("Content-Type") == (
            'multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted";'
            'boundary="Encrypted Boundary"'
        )
        assert r.getheader("Server") == "Microsoft-HTTPAPI/2.0"
        assert b"<p:uValue>2</p:uValue>" in xml
    assert len(s.sockets) == 1  # one TCP connection for the handshake and every call


def test_ntlm_scheme_and_spnego_wrapped_tokens(lab: RunningLab) -> None:
    _, port, _ = lab.hosts["w10"]
    p = protocol(lab.endpoint("w10"))
    for proto, scheme in (("ntlm", "NTLM"), ("negotiate", "Negotiate")):
        s = RawSession(port, protocol=proto, scheme=scheme)
        assert s.authenticate().status == 200
        r, xml = s.send(reg_request(p, "GetDWORDValue", PA, VALUE))
        assert r.status == 200
        assert b"<p:uValue>2</p:uValue>" in xml


def test_encrypted_fault_reply(lab: RunningLab) -> None:
    _, port, _ = lab.hosts["w10"]
    s = RawSession(port)
    s.authenticate()
    p = protocol(lab.endpoint("w10"))
    r, xml = s.send(enumerate_request(p, "SELECT * FROM Win32_Nope"))
    assert r.status == 500
    assert r.getheader("Content-Type", "").startswith("multipart/encrypted")
    assert b"WSManFault" in xml


def test_bad_password_is_401_with_empty_body(lab: RunningLab) -> None:
    _, port, _ = lab.hosts["w10"]
    s = RawSession(port, password="wrong")
    r = s.authenticate()
    assert r.status == 401
    assert r.getheader("Content-Length") == "0"
    p = protocol(lab.endpoint("w10"), password="wrong")
    with pytest.raises(InvalidCredentialsError):
        p.send_message(reg_request(p, "GetDWORDValue", PA, VALUE))


def test_unencrypted_message_over_http_is_refused(lab: RunningLab) -> None:
    p = protocol(lab.endpoint("w10"), message_encryption="never")
    with pytest.raises(InvalidCredentialsError):
        p.send_message(reg_request(p, "GetDWORDValue", PA, VALUE))


def test_basic_over_http_is_refused(lab: RunningLab) -> None:
    r = requests.post(lab.endpoint("w10"), data=b"<x/>", auth=(USER, "Lab-Passw0rd!"), timeout=10)
    assert r.status_code == 401
    assert r.content == b""


def test_basic_over_https_with_lab_ca(lab: RunningLab) -> None:
    assert lab.ca is not None
    assert lab.hosts["tls"][2] == "https"
    inventory = lab.inventory.read_text()
    assert "scheme: https, transport: basic" in inventory
    p = protocol(
        lab.endpoint("tls"),
        transport="basic",
        message_encryption="auto",
        server_cert_validation="validate",
        ca_trust_path=str(lab.ca),
    )
    services = reg_call(p, "EnumKey", "SYSTEM\\CurrentControlSet\\Services")["sNames"]
    assert services == ["BFE", "LanmanServer", "PolicyAgent", "Tcpip"]
    bad = protocol(
        lab.endpoint("tls"),
        transport="basic",
        password="nope",
        message_encryption="auto",
        server_cert_validation="validate",
        ca_trust_path=str(lab.ca),
    )
    with pytest.raises(InvalidCredentialsError):
        reg_call(bad, "EnumKey", PA)
    r = requests.post(lab.endpoint("tls"), data=b"<x/>", auth=(USER, "nope"), verify=str(lab.ca), timeout=10)
    assert r.status_code == 401
    assert r.content == b""
    ctx = ssl.create_default_context()  # no lab CA: verification must fail
    _, tls_port, _ = lab.hosts["tls"]
    c = http.client.HTTPSConnection("127.0.0.1", tls_port, context=ctx, timeout=10)
    with pytest.raises(ssl.SSLError):
        c.request("POST", "/wsman", body=b"")


def test_ntlm_over_https_without_message_encryption(lab: RunningLab) -> None:
    p = protocol(
        lab.endpoint("tls"),
        message_encryption="auto",
        server_cert_validation="validate",
        ca_trust_path=str(lab.ca),
    )
    assert rv(reg_call(p, "GetDWORDValue", PA, VALUE)) == 1


def test_latency_is_added_per_round_trip(lab: RunningLab) -> None:
    t0 = time.monotonic()
    r = requests.post(lab.endpoint("slowlink"), data=b"", timeout=10)
    assert r.status_code == 401
    assert time.monotonic() - t0 >= 0.29


# ---------------------------------------------------------------- shell


def test_run_cmd_reg_query(lab: RunningLab) -> None:
    s = winrm.Session(lab.endpoint("w10"), auth=(USER, "Lab-Passw0rd!"), transport="ntlm")
    r = s.run_cmd("reg", ["query", "HKLM\\" + PA, "/v", VALUE])
    assert r.status_code == 0
    assert r.std_out == (
        b"\r\nHKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Services\\PolicyAgent\r\n"
        b"    AssumeUDPEncapsulationContextOnSendRule    REG_DWORD    0x2\r\n\r\n"
    )
    r = s.run_cmd("reg", ["query", "HKLM\\" + IPSEC, "/v", VALUE])
    assert r.status_code == 1
    assert r.std_err == b"ERROR: The system was unable to find the specified registry key or value.\r\n"


def test_run_ps_reads_value(lab: RunningLab) -> None:
    s = winrm.Session(lab.endpoint("w10"), auth=(USER, "Lab-Passw0rd!"), transport="ntlm")
    t0 = time.monotonic()
    r = s.run_ps(f"Get-ItemPropertyValue -Path 'HKLM:\\{PA}' -Name {VALUE}")
    assert time.monotonic() - t0 >= 0.4  # process_start_ms for PowerShell
    assert (r.status_code, r.std_out) == (0, b"2\r\n")
    r = s.run_ps(f"(Get-ItemProperty -Path 'HKLM:\\{PA}').Max")
    assert r.std_out == b"-1\r\n"  # PowerShell shows REG_DWORD as Int32
    r = s.run_ps(f"Get-ItemProperty -Path 'HKLM:\\{PA}' -Name {VALUE}")
    assert r.status_code == 0
    assert f"{VALUE} : 2\r\n".encode() in r.std_out
    r = s.run_ps(f"Get-ItemProperty -Path 'HKLM:\\{IPSEC}' -Name {VALUE}")
    assert r.status_code == 1
    assert b"Cannot find path" in r.std_err
    r = s.run_ps("Get-Foo -Bar")
    assert r.status_code == 1
    assert b"is not recognized" in r.std_err


def test_shell_lifecycle_raw(lab: RunningLab) -> None:
    p = protocol(lab.endpoint("w10"))
    shell = p.open_shell()
    cid = p.run_command(shell, "hostname")
    out, err, code = p.get_command_output(shell, cid)
    assert (out, err, code) == (b"W10\r\n", b"", 0)
    p.cleanup_command(shell, cid)
    p.close_shell(shell)
    with pytest.raises((WSManFaultError, WinRMTransportError)):
        p.run_command(shell, "hostname")


def test_ready_line_once(lab: RunningLab) -> None:
    err = lab.stderr()
    assert err.count("natt-audit lab: serving 7 hosts on 127.0.0.1:") == 1
    assert base64 is not None
