"""Fault shapes Windows sends (docs/wire.md), read and classified by family, for any HTTP status."""

from __future__ import annotations

import pytest

from scanner.collect.wsman.errors import CollectError, HttpStatusError
from scanner.collect.wsman.faults import Fault, family, read_fault, status_error
from scanner.collect.wsman.xmlsafe import parse
from scanner.core.models import Stage

S = "http://www.w3.org/2003/05/soap-envelope"
F = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
WMIERR = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/MSFT_WmiError"
EXT = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/cimv2/__ExtendedStatus"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


def envelope(fault: str) -> bytes:
    return (
        f'<s:Envelope xml:lang="en-US" xmlns:s="{S}" xmlns:xsi="{XSI}"'
        ' xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><s:Header/>'
        f"<s:Body>{fault}</s:Body></s:Envelope>"
    ).encode()


def soap_fault(detail: str, *, subcode: str = "w:InternalError", reason: str = "Reason text. ") -> bytes:
    sub = f"<s:Subcode><s:Value>{subcode}</s:Value></s:Subcode>" if subcode else ""
    text = f'<s:Reason><s:Text xml:lang="en-US">{reason}</s:Text></s:Reason>' if reason else ""
    return envelope(
        f"<s:Fault><s:Code><s:Value>s:Receiver</s:Value>{sub}</s:Code>{text}<s:Detail>{detail}</s:Detail></s:Fault>"
    )


def wsmanfault(code: str, message: str = "x", inner: str = "") -> str:
    body = inner or message
    return f'<f:WSManFault xmlns:f="{F}" Code="{code}" Machine="HOST"><f:Message>{body}</f:Message></f:WSManFault>'


def wmierror(code: int, message: str = "WMI Message. ") -> str:
    # The shape of pywinrm's test_wsman_fault_wmi_error_detail (https://github.com/diyan/pywinrm/pull/382).
    return (
        f'<p:MSFT_WmiError b:IsCIM_Error="true" xmlns:b="http://schemas.dmtf.org/wbem/wsman/1/cimbinding.xsd"'
        f' xmlns:p="{WMIERR}" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xsi:type="p:MSFT_WmiError_Type">'
        '<p:CIMStatusCode xsi:type="cim:cimUnsignedInt">27</p:CIMStatusCode>'
        f'<p:Message xsi:type="cim:cimString">{message}</p:Message>'
        f'<p:MessageID xsi:type="cim:cimString">HRESULT 0x{code:08x}</p:MessageID>'
        f'<p:error_Code xsi:type="cim:cimUnsignedInt">{code}</p:error_Code>'
        '<p:error_Type xsi:type="cim:cimString">HRESULT</p:error_Type></p:MSFT_WmiError>'
    )


def provider(code: str, status: str | None = None, message: str = "provider says no") -> str:
    ext = ""
    if status is not None:
        ext = (
            f'<f:ExtendedError><p:__ExtendedStatus xmlns:p="{EXT}"><p:Operation>ExecMethod</p:Operation>'
            f"<p:StatusCode>{status}</p:StatusCode></p:__ExtendedStatus></f:ExtendedError>"
        )
    return (
        '<f:ProviderFault provider="WMI Provider" path="%systemroot%\\system32\\WsmWmiPl.dll">'
        f'<f:WSManFault xmlns:f="{F}" Code="{code}" Machine="HOST"><f:Message>{message}</f:Message>'
        f"</f:WSManFault>{ext}</f:ProviderFault>"
    )


def error(body: bytes, status: int = 500, **kw: bool) -> CollectError:
    return status_error(HttpStatusError(status, body, f"HTTP {status}", **kw))


ACCESS_TEXT = (
    "The WS-Management service cannot process the request. The WMI service returned an 'access denied' error. "
)

SHAPES = {
    # pywinrm PR 382's capture: the operations quota as MSFT_WmiError alone, no WSManFault.
    "quota-wmierror-only": (soap_fault(wmierror(2150859174)), "quota", "MSFT_WmiError 2150859174 (0x803381A6)"),
    "quota-wsmanfault": (
        soap_fault(wsmanfault("2150859174"), subcode="w:QuotaLimit"),
        "quota",
        "WSManFault 2150859174",
    ),
    "shell-quota": (soap_fault(wsmanfault("2150859173")), "quota", "0x803381A5"),
    "access-code-5": (
        soap_fault(wsmanfault("5", "Access is denied."), subcode="w:AccessDenied"),
        "access_denied",
        "WSManFault 5 (0x00000005)",
    ),
    "access-e-accessdenied": (
        soap_fault(wsmanfault("2147942405", "Access is denied. "), reason="Access is denied. "),
        "access_denied",
        "0x80070005",
    ),
    "access-wbem-wmierror-only": (soap_fault(wmierror(2147749891, "Access denied ")), "access_denied", "0x80041003"),
    "access-wmi-svc-provider": (
        soap_fault(
            wsmanfault("2150859012", inner=provider("2150859012", "2147749891", ACCESS_TEXT)), reason=ACCESS_TEXT
        ),
        "access_denied",
        "0x80338104",
    ),
    "access-extended-status-only": (
        soap_fault(wsmanfault("2150858755", inner=provider("2150858755", "2147749891"))),
        "access_denied",
        "__ExtendedStatus 2147749891",
    ),
    "access-text-only": (soap_fault(wsmanfault("12345", ACCESS_TEXT), reason=ACCESS_TEXT), "access_denied", "12345"),
    "access-subcode-only": (soap_fault("", subcode="w:AccessDenied", reason="nope"), "access_denied", "nope"),
    "not-found-class": (
        soap_fault(wsmanfault("2150858752", inner=provider("2150858752")) + wmierror(2147749904)),
        "wmi_class",
        "MSFT_WmiError 2147749904",
    ),
    "not-found-wmierror-decides": (
        soap_fault(wsmanfault("2150858755") + wmierror(2147749902)),
        "wmi_class",
        "0x8004100E",
    ),
    "timeout": (soap_fault(wsmanfault("2150858793"), subcode="w:TimedOut"), "operation_timeout", "0x80338029"),
    "selectors": (
        soap_fault(wsmanfault("2150858813"), subcode="w:InvalidSelectors"),
        "invalid_selectors",
        "0x8033803D",
    ),
    "action": (soap_fault(wsmanfault("2150858771"), subcode="a:ActionNotSupported"), "not_supported", "0x80338013"),
    "schema": (
        soap_fault(wsmanfault("2150858817"), subcode="w:SchemaValidationError"),
        "request_rejected",
        "0x80338041",
    ),
    "unknown": (
        soap_fault(wsmanfault("2150858755")),
        "wsman_fault",
        "WSManFault 2150858755 (0x80338003): Reason text.",
    ),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_shape_is_classified_by_family(name: str) -> None:
    body, reason, words = SHAPES[name]
    err = error(body)
    assert (err.stage, err.reason) == (Stage.COLLECT, reason), err.message
    assert words in err.message


def test_first_code_with_a_family_decides_in_order() -> None:
    fault = read_fault(parse(soap_fault(wsmanfault("2150858755", inner=provider("2150858752")) + wmierror(2150859174))))
    assert fault is not None
    assert [where for where, _ in fault.codes()] == ["WSManFault", "ProviderFault", "MSFT_WmiError"]
    assert family(fault) == "wmi_class"  # the provider's not-found comes before the WMI error's quota
    assert family(Fault(wmi_code="2150859174", subcode="AccessDenied")) == "quota"  # a code beats a subcode
    assert family(Fault(wsman_code="99999999999")) is None  # out of range: not a code


@pytest.mark.parametrize("status", [400, 403, 500, 503])
def test_a_fault_is_read_on_any_status(status: int) -> None:
    err = error(SHAPES["quota-wmierror-only"][0], status)
    assert err.reason == "quota"
    assert err.message.startswith("" if status == 500 else f"HTTP {status}: ")


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (503, b"", "http_503"),
        (502, b"<html><body>502 Bad Gateway</body></html>", "http_502"),
        (400, b"Bad Request", "http_400"),
        (500, b"", "http_500"),
        (500, b"Internal Server Error", "malformed_xml"),  # WinRM's fault status must carry a fault
    ],
)
def test_a_body_that_is_no_fault_keeps_the_status(status: int, body: bytes, reason: str) -> None:
    assert error(body, status).reason == reason


def test_unencrypted_fault_on_an_encrypted_session_is_that_fault() -> None:
    err = error(SHAPES["schema"][0], 400, unencrypted=True)
    assert err.reason == "request_rejected"
    err = error(SHAPES["access-code-5"][0], 500, unencrypted=True)
    assert err.reason == "access_denied"


def test_unencrypted_non_fault_on_an_encrypted_session_is_never_data() -> None:
    assert error(b"<html/>", 500, unencrypted=True).reason == "bad_encryption"
    body = envelope("<p:GetDWORDValue_OUTPUT><p:ReturnValue>0</p:ReturnValue></p:GetDWORDValue_OUTPUT>")
    assert error(body, 500, unencrypted=True).reason == "bad_encryption"
    assert error(b"<html/>", 400, unencrypted=True).reason == "http_400"


def test_fault_during_the_handshake() -> None:
    err = error(SHAPES["quota-wsmanfault"][0], 500, handshake=True)
    assert (err.stage, err.reason) == (Stage.COLLECT, "quota")
    assert err.message.startswith("during authentication: WSManFault 2150859174")
    assert error(b"<html>busy</html>", 500, handshake=True).reason == "http_500"
    assert error(b"", 503, handshake=True).reason == "http_503"


def test_fault_text_is_bounded_and_single_line() -> None:
    long = "Access\n\tdenied " + "x" * 5000
    err = error(soap_fault(wsmanfault("5", long), reason=""))
    assert "\n" not in err.message and "\t" not in err.message
    assert len(err.message) < 400
