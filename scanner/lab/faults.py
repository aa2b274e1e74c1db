"""Faults as WinRM sends them: the s:Fault builder, WMI provider errors and the estate's injected faults.

Every shape is listed in docs/wire.md with its public source; docs/lab.md says which estate fault
produces which shape. The dialect depends on the host's WinRM persona: 3.0 and later add a
``p:MSFT_WmiError`` to WMI provider faults (and send some faults with it alone); 1.1 and 2.0 carry
WMI's own code in ``f:ProviderFault``'s ``f:ExtendedError/p:__ExtendedStatus`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from scanner.lab.soap import (
    ACT_FAULT,
    ACT_GET,
    CANNOT,
    NS_CIM,
    NS_F,
    NS_S,
    NS_WMIERR,
    Reply,
    Request,
    envelope,
    x,
)

if TYPE_CHECKING:
    from scanner.lab.wsman import HostState

NS_EXT = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/cimv2/__ExtendedStatus"

# WSManFault codes. Timeout, quotas, not found and access denied come from recorded WinRM traffic;
# the rest are wsmerror.h's ERROR_WSMAN_* values (Windows SDK).
F_TIMEOUT = 2150858793  # 0x80338029 ERROR_WSMAN_OPERATION_TIMEDOUT
F_QUOTA_SHELLS = 2150859173  # 0x803381A5 ERROR_WSMAN_QUOTA_MAX_SHELLS
F_QUOTA_OPS = 2150859174  # 0x803381A6 ERROR_WSMAN_QUOTA_MAX_OPERATIONS
F_WMI_CLASS = 2150858752  # 0x80338000 ERROR_WSMAN_RESOURCE_NOT_FOUND
F_WMI_NAMESPACE = 2150858778  # 0x8033801A
F_ACCESS_DENIED = 5  # ERROR_ACCESS_DENIED
F_E_ACCESSDENIED = 2147942405  # 0x80070005 E_ACCESSDENIED
F_WMI_SVC_ACCESS_DENIED = 2150859012  # 0x80338104 ERROR_WSMAN_WMI_SVC_ACCESS_DENIED
F_ACTION = 2150858771  # 0x80338013 ERROR_WSMAN_ACTION_NOT_SUPPORTED
F_BAD_CONTEXT = 2150858779  # 0x8033801B ERROR_WSMAN_ENUMERATE_INVALID_ENUMERATION_CONTEXT
F_BAD_SELECTOR = 2150858813  # 0x8033803D ERROR_WSMAN_INVALID_SELECTORS
F_SCHEMA = 2150858817  # 0x80338041, sent with w:SchemaValidationError
F_INVALID_BODY = 2150858791  # 0x80338027 ERROR_WSMAN_INVALID_SOAP_BODY
WBEM_ACCESS_DENIED = 2147749891  # 0x80041003 WBEM_E_ACCESS_DENIED
WBEM_INVALID_METHOD = 2147749934  # 0x8004102E WBEM_E_INVALID_METHOD

QUOTA_TEXT = (
    CANNOT + ". This user is allowed a maximum number of 25 concurrent operations, which has been exceeded."
    " Close existing operations for this user, or raise the quota for this user."
)
WMI_ACCESS_TEXT = CANNOT + ". The WMI service returned an 'access denied' error."


@dataclass(frozen=True)
class Shape:
    """How WinRM sends one WSManFault code: SOAP code value, subcode and message text."""

    value: str
    subcode: str
    message: str


# The shape `soap-fault:<code>` uses for the codes it knows; any other code gets a generic one.
SHAPES: dict[int, Shape] = {
    F_TIMEOUT: Shape(
        "s:Receiver",
        "w:TimedOut",
        "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.",
    ),
    F_QUOTA_OPS: Shape("s:Receiver", "w:QuotaLimit", QUOTA_TEXT),
    F_QUOTA_SHELLS: Shape(
        "s:Receiver",
        "w:QuotaLimit",
        CANNOT + ". This user is allowed a maximum number of 30 concurrent shells, which has been exceeded.",
    ),
    F_ACCESS_DENIED: Shape("s:Sender", "w:AccessDenied", "Access is denied."),
    F_E_ACCESSDENIED: Shape("s:Receiver", "w:InternalError", "Access is denied. "),
    F_WMI_CLASS: Shape(
        "s:Sender",
        "w:DestinationUnreachable",
        CANNOT + ". The service cannot find the resource identified by the resource URI and selectors.",
    ),
    F_BAD_SELECTOR: Shape(
        "s:Sender",
        "w:InvalidSelectors",
        CANNOT + " because the request contained invalid selectors for the resource.",
    ),
    F_ACTION: Shape(
        "s:Sender", "a:ActionNotSupported", "The WS-Management service does not support the action specified."
    ),
    F_SCHEMA: Shape("s:Sender", "w:SchemaValidationError", CANNOT + " because the XML is invalid."),
    F_INVALID_BODY: Shape(
        "s:Sender", "w:InvalidBody", CANNOT + " because the request packet does not have a valid SOAP body."
    ),
}


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
    winrm: str = "3.0",
    wsmanfault: bool = True,
    cim_status: int = 6,
    status: int = 500,
) -> Reply:
    """Build a SOAP 1.2 fault in Windows' shape (HTTP 500 unless `status` says otherwise).

    `provider` wraps the message in WMI's f:ProviderFault; `wmi_code` is WMI's own code, carried
    as p:MSFT_WmiError/p:error_Code on WinRM 3.0+ and as p:__ExtendedStatus/p:StatusCode in the
    provider fault on 1.1/2.0. `wsmanfault=False` leaves the f:WSManFault out (MSFT_WmiError only).
    """
    msg = x(message)
    modern = winrm not in ("1.1", "2.0")
    detail_msg = f"<f:Message>{msg}</f:Message>"
    if provider:
        extended = ""
        if wmi_code is not None and not modern:
            extended = (
                f'<f:ExtendedError><p:__ExtendedStatus xmlns:p="{NS_EXT}" xsi:type="p:__ExtendedStatus_Type">'
                f"<p:Description>{msg}</p:Description><p:Operation>ExecMethod</p:Operation>"
                f"<p:ProviderName>WinMgmt</p:ProviderName><p:StatusCode>{wmi_code}</p:StatusCode>"
                f"</p:__ExtendedStatus></f:ExtendedError>"
            )
        inner = (
            f'<f:ProviderFault provider="WMI Provider" path="%systemroot%\\system32\\WsmWmiPl.dll">'
            f'<f:WSManFault xmlns:f="{NS_F}" Code="{code}" Machine="{x(machine)}">'
            f"<f:Message>{msg}</f:Message>"
            f"</f:WSManFault>{extended}</f:ProviderFault>"
        )
        detail_msg = f"<f:Message>{inner}</f:Message>"
    wmi = ""
    if wmi_code is not None and modern:
        wmi = (
            f'<p:MSFT_WmiError b:IsCIM_Error="true" xmlns:b="http://schemas.dmtf.org/wbem/wsman/1/cimbinding.xsd"'
            f' xmlns:p="{NS_WMIERR}" xmlns:cim="{NS_CIM}" xsi:type="p:MSFT_WmiError_Type">'
            f"<p:CIMStatusCode>{cim_status}</p:CIMStatusCode><p:Message>{msg}</p:Message>"
            f"<p:MessageID>HRESULT 0x{wmi_code:08x}</p:MessageID>"
            f"<p:error_Category>30</p:error_Category><p:error_Code>{wmi_code}</p:error_Code>"
            f"<p:error_Type>HRESULT</p:error_Type><p:error_WindowsErrorMessage>{msg}</p:error_WindowsErrorMessage>"
            f"</p:MSFT_WmiError>"
        )
    wsman = ""
    if wsmanfault:
        wsman = f'<f:WSManFault xmlns:f="{NS_F}" Code="{code}" Machine="{x(machine)}">{detail_msg}</f:WSManFault>'
    body = (
        f"<s:Fault><s:Code><s:Value>{value}</s:Value><s:Subcode><s:Value>{subcode}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{msg} </s:Text></s:Reason><s:Detail>{wsman}{wmi}</s:Detail></s:Fault>'
    )
    return Reply(status, envelope(ACT_FAULT, relates_to, body))


def method_not_found(relates_to: str | None, machine: str, winrm: str) -> Reply:
    """Build the fault Windows sends for a method the WMI class does not have (WBEM_E_INVALID_METHOD)."""
    return fault(
        relates_to,
        F_ACTION,
        "The WS-Management service cannot process the request. The method is not found.",
        value="s:Sender",
        subcode="a:ActionNotSupported",
        provider=True,
        wmi_code=WBEM_INVALID_METHOD,
        machine=machine,
        winrm=winrm,
    )


def coded_fault(relates_to: str | None, code: int, machine: str, winrm: str, status: int = 500) -> Reply:
    """Return the fault WinRM sends for a WSManFault `code` (the shape in SHAPES, else a generic one)."""
    shape = SHAPES.get(code) or Shape("s:Receiver", "w:InternalError", f"{CANNOT} (code {code}).")
    return fault(
        relates_to,
        code,
        shape.message,
        value=shape.value,
        subcode=shape.subcode,
        machine=machine,
        winrm=winrm,
        status=status,
    )


def estate_fault(st: HostState, req: Request) -> Reply | None:
    """Apply the host's WMI-level fault, if any (docs/lab.md, Faults)."""
    f = st.host.fault
    if f is None:
        return None
    mid, machine, winrm = req.message_id, st.machine, st.host.winrm
    if f.kind == "wmi-access-denied":
        # WMI namespace security denies remote access: WinRM answers the access-denied fault (code 5).
        return coded_fault(mid, F_ACCESS_DENIED, machine, winrm)
    if f.kind == "access-denied-hresult":
        return coded_fault(mid, F_E_ACCESSDENIED, machine, winrm)
    if f.kind == "wmi-svc-access-denied":
        return fault(
            mid,
            F_WMI_SVC_ACCESS_DENIED,
            WMI_ACCESS_TEXT,
            value="s:Sender",
            subcode="w:AccessDenied",
            provider=True,
            wmi_code=WBEM_ACCESS_DENIED,
            machine=machine,
            winrm=winrm,
            cim_status=2,  # CIM_ERR_ACCESS_DENIED
        )
    if f.kind == "wbem-access-denied":
        # The MSFT_WmiError-only shape (WinRM 3.0+) carrying WMI's own access-denied code.
        return fault(
            mid, WBEM_ACCESS_DENIED, "Access denied ", wmi_code=WBEM_ACCESS_DENIED, wsmanfault=False, cim_status=2
        )
    if f.kind == "quota":
        return coded_fault(mid, F_QUOTA_OPS, machine, winrm)
    if f.kind == "quota-wmierror":
        # pywinrm PR 382's capture: the operations quota as MSFT_WmiError alone (CIM status 27).
        return fault(mid, F_QUOTA_OPS, QUOTA_TEXT, wmi_code=F_QUOTA_OPS, wsmanfault=False, cim_status=27)
    if f.kind in ("soap-fault", "plain-fault"):
        reply = coded_fault(mid, f.arg, machine, winrm, f.status)
        reply.plain = f.kind == "plain-fault"
        return reply
    if f.kind == "malformed-xml":
        bad = envelope(ACT_GET + "Response", mid, "<p:Broken><p:ReturnValue>0</p:Return")
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
        winrm=st.host.winrm,
    )
