"""Faults as WinRM sends them: the s:Fault builder, WMI provider errors and the estate's injected faults."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scanner.lab.soap import ACT_FAULT, ACT_GET, CANNOT, NS_CIM, NS_F, NS_S, NS_WMIERR, Reply, Request, envelope, x

if TYPE_CHECKING:
    from scanner.lab.wsman import HostState

# WSManFault codes: the first five are in DOMAIN.md section 3; the others are lab choices (docs/lab.md).
F_TIMEOUT = 2150858793
F_QUOTA_SHELLS = 2150859173
F_QUOTA_OPS = 2150859174
F_WMI_CLASS = 2150858752
F_WMI_NAMESPACE = 2150858778
F_ACCESS_DENIED = 5
F_ACTION = 2150858801
F_BAD_CONTEXT = 2150858767
F_BAD_SELECTOR = 2150858843
F_SCHEMA = 2150858817


def fault(
    relates_to: str | None,
    code: int,
    message: str,
    *,
    value: str = "s:Receiver",
    subcode: str = "w:InternalError",
    provider: bool = False,
    wmi_code: int | None = None,
    machine: str = "localhost",
) -> Reply:
    """Build a SOAP 1.2 fault in Windows' shape (HTTP 500, WSManFault detail)."""
    msg = x(message)
    if provider:
        inner = (
            f'<f:ProviderFault provider="WMI Provider" path="%systemroot%\\system32\\WsmWmiPl.dll">'
            f'<f:WSManFault xmlns:f="{NS_F}" Code="{code}" Machine="{x(machine)}">'
            f"<f:Message>{msg}</f:Message>"
            f"</f:WSManFault></f:ProviderFault>"
        )
        detail_msg = f"<f:Message>{inner}</f:Message>"
    else:
        detail_msg = f"<f:Message>{msg}</f:Message>"
    wmi = ""
    if wmi_code is not None:
        wmi = (
            f'<p:MSFT_WmiError xmlns:p="{NS_WMIERR}" xmlns:cim="{NS_CIM}" xsi:type="p:MSFT_WmiError_Type">'
            f"<p:CIMStatusCode>6</p:CIMStatusCode><p:Message>{msg}</p:Message>"
            f"<p:error_Category>30</p:error_Category><p:error_Code>{wmi_code}</p:error_Code>"
            f"<p:error_Type>HRESULT</p:error_Type><p:error_WindowsErrorMessage>{msg}</p:error_WindowsErrorMessage>"
            f"</p:MSFT_WmiError>"
        )
    body = (
        f"<s:Fault><s:Code><s:Value>{value}</s:Value><s:Subcode><s:Value>{subcode}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{msg} </s:Text></s:Reason><s:Detail>'
        f'<f:WSManFault xmlns:f="{NS_F}" Code="{code}" Machine="{x(machine)}">{detail_msg}'
        f"</f:WSManFault>{wmi}"
        f"</s:Detail></s:Fault>"
    )
    return Reply(500, envelope(ACT_FAULT, relates_to, body))


def estate_fault(st: HostState, req: Request) -> Reply | None:
    """Apply the host's WMI-level fault, if any."""
    f = st.host.fault
    if f is None:
        return None
    if f.kind == "wmi-access-denied":
        # WMI namespace security denies remote access: WinRM answers the access-denied fault (code 5).
        return fault(
            req.message_id,
            F_ACCESS_DENIED,
            "Access is denied.",
            value="s:Sender",
            subcode="w:AccessDenied",
            machine=st.machine,
        )
    if f.kind == "quota":
        return fault(
            req.message_id,
            F_QUOTA_OPS,
            CANNOT + ". This user is allowed a maximum number of 25 concurrent operations,"
            " which has been exceeded. Close existing operations for this user, or raise"
            " the quota for this user.",
            subcode="w:QuotaLimit",
            machine=st.machine,
        )
    if f.kind == "soap-fault":
        if f.arg == F_TIMEOUT:
            return fault(
                req.message_id,
                F_TIMEOUT,
                "The WS-Management service cannot complete the operation within the time specified in"
                " OperationTimeout.",
                subcode="w:TimedOut",
                machine=st.machine,
            )
        return fault(
            req.message_id,
            f.arg,
            f"The WS-Management service cannot process the request (code {f.arg}).",
            machine=st.machine,
        )
    if f.kind == "malformed-xml":
        bad = envelope(ACT_GET + "Response", req.message_id, "<p:Broken><p:ReturnValue>0</p:Return")
        return Reply(200, bad[: len(bad) - 40])
    if f.kind == "xml-bomb":
        return Reply(200, XML_BOMB)
    if f.kind == "oversize":
        return Reply(200, b"", special="oversize")
    return None


XML_BOMB = (
    b'<?xml version="1.0"?>\n<!DOCTYPE s:Envelope [\n<!ENTITY lol "lol">\n'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'.encode() for i in range(1, 10)
    )
    + b"]>\n"
    + f'<s:Envelope xmlns:s="{NS_S}"><s:Body>&lol9;</s:Body></s:Envelope>'.encode()
)

# WMI provider errors as WinRM wraps them: (fault code, what WMI said, subcode, WBEM error code).
_WMI_FAULTS = {
    "namespace": (F_WMI_NAMESPACE, "invalid namespace", "w:InvalidResourceURI", 2147749902),
    "class": (F_WMI_CLASS, "invalid class", "w:DestinationUnreachable", 2147749904),
    "query": (F_WMI_CLASS, "invalid query", "w:CannotProcessFilter", 2147749911),
}


def wmi_fault(kind: str, st: HostState, req: Request) -> Reply:
    """Return a WMI provider error (namespace, class, query) wrapped the way WinRM wraps it."""
    code, what, subcode, wmi_code = _WMI_FAULTS[kind]
    return fault(
        req.message_id,
        code,
        CANNOT + f". The WMI service returned an '{what}' error.",
        value="s:Sender",
        subcode=subcode,
        provider=True,
        wmi_code=wmi_code,
        machine=st.machine,
    )
