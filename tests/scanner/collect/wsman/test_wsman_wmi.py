"""WMI operations against canned, Windows-shaped replies: both OS shapes, StdRegProv, faults."""

from __future__ import annotations

import re
from typing import Any

import pytest
from winrm.protocol import Protocol

from scanner.collect.collector import read_key
from scanner.collect.wsman import wmi
from scanner.collect.wsman.errors import CollectError, HttpStatusError
from scanner.core.models import POLICYAGENT_KEY, VALUE_NAME, Stage

S = "http://www.w3.org/2003/05/soap-envelope"
A = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
W = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
N = "http://schemas.xmlsoap.org/ws/2004/09/enumeration"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
OS_URI = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/cimv2/Win32_OperatingSystem"


def envelope(body: str, relates: str | None = "{mid}") -> str:
    rel = f"<a:RelatesTo>{relates}</a:RelatesTo>" if relates is not None else ""
    return (
        f'<s:Envelope xml:lang="en-US" xmlns:s="{S}" xmlns:a="{A}" xmlns:w="{W}" xmlns:n="{N}"'
        f' xmlns:xsi="{XSI}">'
        f"<s:Header><a:To>{A}/role/anonymous</a:To><a:Action>x</a:Action>"
        f"<a:MessageID>uuid:AAAAAAAA-0000-0000-0000-000000000000</a:MessageID>{rel}</s:Header>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    )


class Canned(Protocol):
    """A real pywinrm Protocol whose transport answers from a script of reply templates."""

    def __init__(self, replies: list[str | HttpStatusError]) -> None:
        super().__init__("http://127.0.0.1:1/wsman", transport="plaintext", username="u", password="")
        self.replies = replies
        self.sent: list[str] = []

    def send_message(self, message: str) -> bytes:
        self.sent.append(message)
        reply = self.replies.pop(0)
        if isinstance(reply, HttpStatusError):
            raise reply
        match = re.search(r"<a:MessageID>uuid:([^<]+)</a:MessageID>", message)
        assert match is not None
        # Windows echoes the MessageID in upper case on some versions: compare case-insensitively.
        return reply.replace("{mid}", "uuid:" + match.group(1).upper()).encode()


def error_of(protocol: Canned, fn: Any, *args: Any) -> CollectError:
    with pytest.raises(CollectError) as info:
        fn(protocol, *args)
    return info.value


SELECT_STAR_ITEM = (
    f'<p:Win32_OperatingSystem xmlns:p="{OS_URI}" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common"'
    ' xsi:type="p:Win32_OperatingSystem_Type" xml:lang="en-US">'
    "<p:BootDevice>\\Device\\HarddiskVolume1</p:BootDevice><p:BuildNumber>19045</p:BuildNumber>"
    '<p:Caption>Microsoft Windows 10 专业版</p:Caption><p:CSDVersion xsi:nil="true"/>'
    "<p:InstallDate><cim:Datetime>2013-04-15T16:28:38.376625Z</cim:Datetime></p:InstallDate>"
    "<p:ServicePackMajorVersion>0</p:ServicePackMajorVersion><p:Version>10.0.19045</p:Version>"
    "</p:Win32_OperatingSystem>"
)
FRAGMENT_ITEM = (
    '<w:XmlFragment><BuildNumber>2600</BuildNumber><Caption xsi:nil="true"/>'
    "<ServicePackMajorVersion>1</ServicePackMajorVersion><Version>5.1.2600</Version></w:XmlFragment>"
)


def enumerate_reply(item: str) -> str:
    return envelope(f"<n:EnumerateResponse><w:Items>{item}</w:Items><w:EndOfSequence/></n:EnumerateResponse>")


def test_os_select_star_shape() -> None:
    proto = Canned([enumerate_reply(SELECT_STAR_ITEM)])
    info = wmi.read_os(proto)
    assert (info.version, info.build, info.service_pack, info.caption) == (
        "10.0.19045",
        19045,
        0,
        "Microsoft Windows 10 专业版",
    )
    sent = proto.sent[0]
    assert "<w:OptimizeEnumeration" in sent
    assert wmi.WQL_DIALECT in sent
    assert wmi.OS_QUERY in sent
    assert wmi.CIMV2_ALL in sent


def test_os_field_list_shape_with_nil_caption() -> None:
    info = wmi.read_os(Canned([enumerate_reply(FRAGMENT_ITEM)]))
    assert (info.version, info.build, info.service_pack, info.caption) == ("5.1.2600", 2600, 1, None)


def test_os_pull_until_item() -> None:
    first = envelope(
        "<n:EnumerateResponse><n:EnumerationContext>uuid:ctx&amp;1</n:EnumerationContext></n:EnumerateResponse>"
    )
    pulled = envelope(
        f"<n:PullResponse><n:Items>{FRAGMENT_ITEM}</n:Items><n:EndOfSequence/></n:PullResponse>"
    )
    proto = Canned([first, pulled])
    assert wmi.read_os(proto).version == "5.1.2600"
    assert "<n:EnumerationContext>uuid:ctx&amp;1</n:EnumerationContext>" in proto.sent[1]
    assert wmi.PULL_ACTION in proto.sent[1]


def test_os_empty_sequence_is_missing_element() -> None:
    reply = envelope("<n:EnumerateResponse><w:Items/><w:EndOfSequence/></n:EnumerateResponse>")
    err = error_of(Canned([reply]), wmi.read_os)
    assert (err.stage, err.reason) == (Stage.PARSE, "missing_element")


@pytest.mark.parametrize("version", ["", "ten", "10", "10.0.19045; rm -rf", "1.2.3.4.5"])
def test_os_bad_version(version: str) -> None:
    item = f"<w:XmlFragment><Version>{version}</Version></w:XmlFragment>"
    err = error_of(Canned([enumerate_reply(item)]), wmi.read_os)
    assert err.reason == "bad_os_version"


def test_relates_to_missing_and_mismatched() -> None:
    missing = envelope(
        f"<n:EnumerateResponse><w:Items>{FRAGMENT_ITEM}</w:Items><w:EndOfSequence/></n:EnumerateResponse>",
        relates=None,
    )
    assert error_of(Canned([missing]), wmi.read_os).reason == "relates_to"
    wrong = enumerate_reply(FRAGMENT_ITEM).replace("{mid}", "uuid:00000000-1111-2222-3333-444444444444")
    assert error_of(Canned([wrong]), wmi.read_os).reason == "relates_to"


def test_not_an_envelope() -> None:
    assert error_of(Canned(["<html><body>hi</body></html>"]), wmi.read_os).reason == "missing_element"


def fault(code: str, text: str = "The WS-Management service cannot process the request.") -> HttpStatusError:
    body = envelope(
        "<s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{text}</s:Text></s:Reason><s:Detail>'
        f'<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="{code}"'
        ' Machine="host"><f:Message><f:ProviderFault provider="WMI Provider">boom</f:ProviderFault>'
        "</f:Message>"
        "</f:WSManFault></s:Detail></s:Fault>"
    ).replace("{mid}", "uuid:x")
    return HttpStatusError(500, body.encode(), "HTTP 500")


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("2150859173", "quota"),
        ("2150859174", "quota"),
        ("5", "access_denied"),
        ("2150858752", "wmi_class"),
        ("2150858778", "wmi_class"),
        ("2150858793", "operation_timeout"),
        ("2150858817", "request_rejected"),
        ("2150858813", "invalid_selectors"),
        ("2150858771", "not_supported"),
        ("12345", "wsman_fault"),
        ("abc", "wsman_fault"),
        ("", "wsman_fault"),
    ],
)
def test_faults_are_classified(code: str, reason: str) -> None:
    err = error_of(Canned([fault(code)]), wmi.read_os)
    assert (err.stage, err.reason) == (Stage.COLLECT, reason)
    assert "WS-Management service" in err.message


def test_empty_and_non_xml_500() -> None:
    assert error_of(Canned([HttpStatusError(500, b"", "x")]), wmi.read_os).reason == "http_500"
    assert (
        error_of(Canned([HttpStatusError(500, b"Internal error", "x")]), wmi.read_os).reason
        == "malformed_xml"
    )
    html = HttpStatusError(500, b"<html><body>oops</body></html>", "x")
    assert error_of(Canned([html]), wmi.read_os).reason == "missing_element"


def reg(method: str, inner: str, ns: str = wmi.STDREGPROV) -> str:
    return envelope(f'<p:{method}_OUTPUT xmlns:p="{ns}">{inner}</p:{method}_OUTPUT>')


def test_dword_present_order_free() -> None:
    proto = Canned([reg("GetDWORDValue", "<p:uValue>4294967295</p:uValue><p:ReturnValue>0</p:ReturnValue>")])
    read = read_key(proto, POLICYAGENT_KEY)
    assert read.key_present
    assert read.value is not None
    assert (read.value.name, read.value.type, read.value.data) == (VALUE_NAME, "REG_DWORD", 4294967295)
    sent = proto.sent[0]
    assert f"<p:hDefKey>{wmi.HKLM}</p:hDefKey>" in sent
    assert f"{wmi.STDREGPROV}/GetDWORDValue" in sent
    assert "<p:sSubKeyName>SYSTEM\\CurrentControlSet\\Services\\PolicyAgent</p:sSubKeyName>" in sent


def test_dword_signed_form_is_made_unsigned() -> None:
    proto = Canned([reg("GetDWORDValue", "<p:ReturnValue>0</p:ReturnValue><p:uValue>-1</p:uValue>")])
    value = read_key(proto, POLICYAGENT_KEY).value
    assert value is not None
    assert value.data == 4294967295


@pytest.mark.parametrize(("rv", "key_present"), [(1, True), (2, False)])
def test_absent(rv: int, key_present: bool) -> None:
    read = read_key(Canned([reg("GetDWORDValue", f"<p:ReturnValue>{rv}</p:ReturnValue>")]), POLICYAGENT_KEY)
    assert (read.key_present, read.value) == (key_present, None)


@pytest.mark.parametrize(
    ("inner", "reason"),
    [
        ("<p:ReturnValue>5</p:ReturnValue>", "access_denied"),
        ("<p:ReturnValue>6</p:ReturnValue>", "unexpected_return"),
        ("<p:ReturnValue>x</p:ReturnValue>", "unexpected_return"),
        ("<p:ReturnValue>0</p:ReturnValue>", "missing_element"),
        ("<p:ReturnValue>0</p:ReturnValue><p:uValue>4294967296</p:uValue>", "unexpected_return"),
        ("", "missing_element"),
    ],
)
def test_bad_dword_replies(inner: str, reason: str) -> None:
    err = error_of(Canned([reg("GetDWORDValue", inner)]), read_key, POLICYAGENT_KEY)
    assert err.reason == reason


def test_output_in_another_namespace_is_missing() -> None:
    reply = reg("GetDWORDValue", "<p:ReturnValue>0</p:ReturnValue><p:uValue>1</p:uValue>", ns="urn:other")
    assert error_of(Canned([reply]), read_key, POLICYAGENT_KEY).reason == "missing_element"


MISMATCH = reg("GetDWORDValue", f"<p:ReturnValue>{wmi.RV_TYPE_MISMATCH}</p:ReturnValue>")


def enum(names: list[str], types: list[int]) -> str:
    inner = "".join(f"<p:sNames>{n}</p:sNames>" for n in names) + "".join(
        f"<p:Types>{t}</p:Types>" for t in types
    )
    return reg("EnumValues", inner + "<p:ReturnValue>0</p:ReturnValue>")


@pytest.mark.parametrize(
    ("code", "method", "inner", "type_name", "data"),
    [
        (1, "GetStringValue", "<p:sValue>2</p:sValue>", "REG_SZ", "2"),
        (1, "GetStringValue", "<p:sValue/>", "REG_SZ", ""),
        (2, "GetExpandedStringValue", "<p:sValue>C:\\WINDOWS</p:sValue>", "REG_EXPAND_SZ", "C:\\WINDOWS"),
        (
            3,
            "GetBinaryValue",
            "<p:uValue>2</p:uValue><p:uValue>0</p:uValue><p:uValue>255</p:uValue>",
            "REG_BINARY",
            "0200ff",
        ),
        (
            7,
            "GetMultiStringValue",
            "<p:sValue>2</p:sValue><p:sValue> 2 </p:sValue>",
            "REG_MULTI_SZ",
            ["2", " 2 "],
        ),
        (11, "GetQWORDValue", "<p:uValue>18446744073709551615</p:uValue>", "REG_QWORD", 18446744073709551615),
    ],
)
def test_other_types_read_with_stored_name(
    code: int, method: str, inner: str, type_name: str, data: object
) -> None:
    stored = "assumeUDPEncapsulationContextOnSendRule"
    proto = Canned(
        [
            MISMATCH,
            enum(["Start", stored], [4, code]),
            reg(method, inner + "<p:ReturnValue>0</p:ReturnValue>"),
        ]
    )
    read = read_key(proto, POLICYAGENT_KEY)
    assert read.value is not None
    assert (read.value.name, read.value.type, read.value.data) == (stored, type_name, data)
    assert f"<p:sValueName>{stored}</p:sValueName>" in proto.sent[2]
    assert f"{wmi.STDREGPROV}/{method}" in proto.sent[2]


def test_unreadable_type_has_no_data() -> None:
    proto = Canned([MISMATCH, enum([VALUE_NAME], [8])])
    value = read_key(proto, POLICYAGENT_KEY).value
    assert value is not None
    assert (value.type, value.data) == ("REG_TYPE_8", None)
    assert len(proto.sent) == 2


def test_enum_values_disagreeing_is_unexpected() -> None:
    assert (
        error_of(Canned([MISMATCH, enum(["Other"], [1])]), read_key, POLICYAGENT_KEY).reason
        == "unexpected_return"
    )
    assert error_of(Canned([MISMATCH, enum([VALUE_NAME], [4])]), read_key, POLICYAGENT_KEY).reason == (
        "unexpected_return"
    )
    unequal = reg("EnumValues", "<p:sNames>a</p:sNames><p:ReturnValue>0</p:ReturnValue>")
    assert error_of(Canned([MISMATCH, unequal]), read_key, POLICYAGENT_KEY).reason == "unexpected_return"


def test_empty_enum_values_nil() -> None:
    nil = reg(
        "EnumValues", '<p:sNames xsi:nil="true"/><p:Types xsi:nil="true"/><p:ReturnValue>0</p:ReturnValue>'
    )
    assert error_of(Canned([MISMATCH, nil]), read_key, POLICYAGENT_KEY).reason == "unexpected_return"


def test_templates_are_reused_with_fresh_message_ids() -> None:
    proto = Canned([reg("GetDWORDValue", "<p:ReturnValue>1</p:ReturnValue>")] * 2)
    read_key(proto, POLICYAGENT_KEY)
    read_key(proto, POLICYAGENT_KEY)
    ids = [re.search(r"<a:MessageID>uuid:([^<]+)<", m).group(1) for m in proto.sent]  # type: ignore[union-attr]
    assert ids[0] != ids[1]
    assert proto.sent[0].replace(ids[0], "X") == proto.sent[1].replace(ids[1], "X")


# ---- writes and Win32_Service -------------------------------------------------------------------


def test_set_dword_sends_every_parameter_and_returns_the_code() -> None:
    proto = Canned([reg("SetDWORDValue", "<p:ReturnValue>5</p:ReturnValue>")])
    assert wmi.set_dword(proto, POLICYAGENT_KEY, VALUE_NAME, 0) == 5
    sent = proto.sent[0]
    for part in ("<p:hDefKey>2147483650</p:hDefKey>", f"<p:sValueName>{VALUE_NAME}</p:sValueName>",
                 "<p:uValue>0</p:uValue>", f"{wmi.STDREGPROV}/SetDWORDValue"):
        assert part in sent
    with pytest.raises(ValueError, match="REG_DWORD"):
        wmi.set_dword(proto, POLICYAGENT_KEY, VALUE_NAME, 1 << 32)


def test_delete_value_output_must_be_present() -> None:
    assert wmi.delete_value(Canned([reg("DeleteValue", "<p:ReturnValue>2</p:ReturnValue>")]), POLICYAGENT_KEY,
                            VALUE_NAME) == 2
    assert error_of(Canned([reg("SetDWORDValue", "<p:ReturnValue>0</p:ReturnValue>")]), wmi.delete_value,
                    POLICYAGENT_KEY, VALUE_NAME).reason == "missing_element"


def service(inner: str) -> str:
    return envelope(f'<p:Win32_Service xmlns:p="{wmi.WIN32_SERVICE}">{inner}</p:Win32_Service>')


def test_service_methods_address_the_instance_by_name() -> None:
    proto = Canned([envelope(
        f'<p:StopService_OUTPUT xmlns:p="{wmi.WIN32_SERVICE}"><p:ReturnValue>3</p:ReturnValue></p:StopService_OUTPUT>'
    )])
    assert wmi.stop_service(proto, "PolicyAgent") == 3
    sent = proto.sent[0]
    assert '<w:SelectorSet><w:Selector Name="Name">PolicyAgent</w:Selector></w:SelectorSet>' in sent
    assert f">{wmi.WIN32_SERVICE}/StopService<" in sent
    assert wmi.service_return(3) == "3 (dependent services running)"
    assert wmi.service_return(99) == "99 (undocumented)"


@pytest.mark.parametrize(
    ("inner", "reason"),
    [
        ("<p:State>Running</p:State>", None),
        ("<p:State>Stop Pending</p:State>", None),
        ("<p:State>Exploded</p:State>", "unexpected_return"),
        ('<p:State xsi:nil="true"/>', "missing_element"),
        ("<p:Name>PolicyAgent</p:Name>", "missing_element"),
    ],
)
def test_service_state_is_one_of_the_documented_states(inner: str, reason: str | None) -> None:
    proto = Canned([service(inner)])
    if reason is None:
        assert wmi.service_state(proto, "PolicyAgent") in wmi.SERVICE_STATES
        assert "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get<" in proto.sent[0]
    else:
        assert error_of(proto, wmi.service_state, "PolicyAgent").reason == reason
