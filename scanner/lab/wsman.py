"""WS-Management handlers of one simulated host: StdRegProv, WQL Enumerate/Pull, Get, Identify, faults.

Shapes follow recorded WinRM traffic (MS-WSMV, DSP0226); docs/domain.md lists the facts relied on.
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

from scanner.lab.estate import HKLM, TYPE_CODES, Host

if TYPE_CHECKING:
    from scanner.lab.shell import ShellState

NS_S = "http://www.w3.org/2003/05/soap-envelope"
NS_A = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_W = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
NS_N = "http://schemas.xmlsoap.org/ws/2004/09/enumeration"
NS_X = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
NS_XSI = "http://www.w3.org/2001/XMLSchema-instance"
NS_CIM = "http://schemas.dmtf.org/wbem/wscim/1/common"
NS_F = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
NS_RSP = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
NS_WSMID = "http://schemas.dmtf.org/wbem/wsman/identity/1/wsmanidentity.xsd"
NS_WMIERR = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/MSFT_WmiError"
WMI = "http://schemas.microsoft.com/wbem/wsman/1/wmi/"
WMI_CIMV2 = WMI + "root/cimv2/"
REG_DEFAULT = WMI + "root/default/StdRegProv"
REG_CIMV2 = WMI + "root/cimv2/StdRegProv"
OS_URI = WMI_CIMV2 + "Win32_OperatingSystem"
WQL = "http://schemas.microsoft.com/wbem/wsman/1/WQL"
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
ANON = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
ACT_ENUMERATE = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate"
ACT_PULL = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull"
ACT_RELEASE = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Release"
ACT_GET = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get"
ACT_CREATE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
ACT_DELETE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
ACT_FAULT = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
SHELL_ACTIONS = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"

# StdRegProv ReturnValue codes (winerror.h / wbemcli.h).
RV_OK, RV_NO_VALUE, RV_NO_KEY, RV_DENIED, RV_BAD_HIVE = 0, 1, 2, 5, 6
RV_TYPE_MISMATCH = 2147749893  # WBEM_E_TYPE_MISMATCH 0x80041005
KNOWN_HIVES = {2147483648, 2147483649, HKLM, 2147483651, 2147483653}

# WSManFault codes: the first six are in docs/domain.md#wsmanfault-codes; the others are lab choices (docs/lab.md).
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

ENV_OPEN = (
    f'<s:Envelope xml:lang="en-US" xmlns:s="{NS_S}" xmlns:a="{NS_A}" xmlns:x="{NS_X}" xmlns:w="{NS_W}"'
    f' xmlns:n="{NS_N}" xmlns:xsi="{NS_XSI}"'
)


CANNOT = "The WS-Management service cannot process the request"


class BadRequest(Exception):
    """The request is not a SOAP envelope the lab can read."""


@dataclass(slots=True)
class Request:
    """The parts of a WS-Man request the handlers need."""

    action: str
    message_id: str | None
    resource_uri: str
    selectors: dict[str, str]
    options: dict[str, str]
    body: ET.Element | None


@dataclass(slots=True)
class Reply:
    """A SOAP reply (or a special action for the server) plus the modelled service time."""

    status: int
    xml: bytes
    delay_ms: int = 0
    special: str | None = None  # "oversize": the server streams a huge body itself


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ns(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def parse_request(body: bytes) -> Request:
    """Parse a SOAP envelope; DTDs are refused before parsing (no entity expansion)."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise BadRequest("DTD not allowed")
    try:
        root = ET.fromstring(body)  # noqa: S314 - DTD refused above
    except ET.ParseError as exc:
        raise BadRequest(str(exc)) from None
    if _local(root.tag) != "Envelope":
        raise BadRequest("not a SOAP envelope")
    action = message_id = None
    resource = ""
    selectors: dict[str, str] = {}
    options: dict[str, str] = {}
    body_el: ET.Element | None = None
    for part in root:
        name = _local(part.tag)
        if name == "Header":
            for h in part:
                hn = _local(h.tag)
                if hn == "Action":
                    action = (h.text or "").strip()
                elif hn == "MessageID":
                    message_id = (h.text or "").strip()
                elif hn == "ResourceURI":
                    resource = (h.text or "").strip()
                elif hn == "SelectorSet":
                    selectors = {s.get("Name", ""): (s.text or "") for s in h}
                elif hn == "OptionSet":
                    options = {o.get("Name", ""): (o.text or "") for o in h}
        elif name == "Body":
            body_el = next(iter(part), None)
    if action is None:
        raise BadRequest("no Action header")
    return Request(action, message_id, resource, selectors, options, body_el)


def _child(el: ET.Element | None, name: str) -> ET.Element | None:
    if el is None:
        return None
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


def _text(el: ET.Element | None, name: str) -> str | None:
    c = _child(el, name)
    return None if c is None else (c.text or "")


def _uuid() -> str:
    return "uuid:" + str(uuid.uuid4()).upper()


_C0 = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def x(s: str) -> str:
    """Escape text for an XML element; C0 controls become character references (as WinRM emits them)."""
    out = escape(s)
    if _C0.search(out):
        out = _C0.sub(lambda m: f"&#x{ord(m.group()):X};", out)
    return out


def envelope(action: str, relates_to: str | None, body: str, extra_ns: str = "") -> bytes:
    """Wrap a body in Windows' reply envelope; RelatesTo echoes the request's MessageID."""
    rel = f"<a:RelatesTo>{x(relates_to)}</a:RelatesTo>" if relates_to else ""
    return (
        f"{ENV_OPEN}{extra_ns}><s:Header><a:Action>{action}</a:Action><a:MessageID>{_uuid()}</a:MessageID>"
        f"<a:To>{ANON}</a:To>{rel}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


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


# ---------------------------------------------------------------- Win32_OperatingSystem


def _cim_datetime(dt: datetime, style: int) -> str:
    # Windows renders cim:Datetime with Z or an offset and a fraction of varying length.
    if style == 0:
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    if style == 1:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + dt.strftime("%z")[:3] + ":" + dt.strftime("%z")[3:]
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def os_properties(host: Host, index: int, now: datetime) -> dict[str, str | int | datetime | list[str] | None]:
    """Return Win32_OperatingSystem's properties for a host (stable per host index)."""
    o = host.os
    nt6 = o.nt >= (6, 0)
    tz = timezone(timedelta(minutes=[0, 60, 120, -300, 540][index % 5]))
    boot = (
        now - timedelta(hours=3 + index % 400, minutes=index % 60, microseconds=index * 7919 % 1_000_000)
    ).astimezone(tz)
    install = datetime(2019 + index % 5, 1 + index % 12, 1 + index % 28, 9, 30, 0, tzinfo=tz)
    props: dict[str, str | int | datetime | list[str] | None] = {
        "BootDevice": "\\Device\\HarddiskVolume1",
        "BuildNumber": str(o.build),
        "BuildType": "Multiprocessor Free",
        "Caption": o.caption,
        "CodeSet": "1252",
        "CountryCode": "1",
        "CreationClassName": "Win32_OperatingSystem",
        "CSCreationClassName": "Win32_ComputerSystem",
        "CSDVersion": o.csd_version,
        "CSName": host.name.split(".")[0].upper()[:15],
        "CurrentTimeZone": int(tz.utcoffset(None).total_seconds() // 60),
        "FreePhysicalMemory": 2_097_152 + index * 37 % 1_000_000,
        "InstallDate": install,
        "LastBootUpTime": boot,
        "LocalDateTime": now.astimezone(tz),
        "Locale": "0409",
        "Manufacturer": "Microsoft Corporation",
        "Name": f"{o.caption}|C:\\WINDOWS|\\Device\\Harddisk0\\Partition2",
        "NumberOfProcesses": 60 + index % 90,
        "NumberOfUsers": 1 + index % 3,
        "Organization": "",
        "OSLanguage": 1033,
        "OSProductSuite": 256,
        "OSType": 18,
        "Primary": "true",
        "ProductType": o.product_type,
        "RegisteredUser": "IT",
        "SerialNumber": f"00330-80000-{index % 100000:05d}-AA{index % 1000:03d}",
        "ServicePackMajorVersion": o.service_pack,
        "ServicePackMinorVersion": 0,
        "Status": "OK",
        "SystemDirectory": "C:\\WINDOWS\\system32",
        "SystemDrive": "C:",
        "TotalVisibleMemorySize": 8_388_152,
        "Version": o.version,
        "WindowsDirectory": "C:\\WINDOWS",
    }
    if nt6:  # properties added in Vista
        props["OSArchitecture"] = o.architecture
        props["MUILanguages"] = ["en-US"]
        props["OperatingSystemSKU"] = 4 if o.product_type == 1 else 7
    return dict(sorted(props.items(), key=lambda kv: kv[0].lower()))


def _render_prop(name: str, value: str | int | datetime | list[str] | None, prefix: str, style: int) -> str:
    tag = f"{prefix}{name}"
    if value is None:
        return f'<{tag} xsi:nil="true"/>'
    if isinstance(value, datetime):
        dt_tag = "cim:Datetime" if prefix else "Datetime"
        return f"<{tag}><{dt_tag}>{_cim_datetime(value, style)}</{dt_tag}></{tag}>"
    if isinstance(value, list):
        return "".join(f"<{tag}>{x(v)}</{tag}>" for v in value)
    return f"<{tag}>{x(str(value))}</{tag}>"


@dataclass
class OsRender:
    """Pre-rendered Win32_OperatingSystem XML of one host."""

    full: str  # the p:Win32_OperatingSystem element
    fragments: dict[str, tuple[str, str]]  # lower name -> (canonical name, un-namespaced element)


def render_os(host: Host, index: int, now: datetime) -> OsRender:
    """Pre-render the instance once at start-up so requests only join strings."""
    props = os_properties(host, index, now)
    style = index % 3
    inner = "".join(_render_prop(k, v, "p:", style) for k, v in props.items())
    full = (
        f'<p:Win32_OperatingSystem xmlns:p="{OS_URI}" xmlns:cim="{NS_CIM}"'
        f' xsi:type="p:Win32_OperatingSystem_Type" xml:lang="en-US">{inner}</p:Win32_OperatingSystem>'
    )
    frags = {k.lower(): (k, _render_prop(k, v, "", style)) for k, v in props.items()}
    return OsRender(full, frags)


_WQL = re.compile(
    r"^\s*select\s+(?P<fields>.+?)\s+from\s+(?P<cls>[A-Za-z_][A-Za-z0-9_]*)\s*(?:where\s+.*)?$", re.I | re.S
)


# ---------------------------------------------------------------- host state


@dataclass
class HostState:
    """Mutable per-host state: pre-rendered XML, open enumerations and shells."""

    host: Host
    index: int
    now: datetime
    _os_xml: OsRender | None = None
    enumerations: OrderedDict[str, str] = field(default_factory=OrderedDict)
    shells: dict[str, ShellState] = field(default_factory=dict)

    @property
    def os_xml(self) -> OsRender:
        """Return the host's Win32_OperatingSystem XML, rendered on first use (keeps start-up fast)."""
        if self._os_xml is None:
            self._os_xml = render_os(self.host, self.index, self.now)
        return self._os_xml

    @property
    def machine(self) -> str:
        """Return the NetBIOS-style machine name used in fault details."""
        return self.host.name.split(".")[0].upper()[:15]


MAX_ENUMERATIONS = 64


def _wmi_fault_check(st: HostState, req: Request) -> Reply | None:
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


def handle(st: HostState, req: Request) -> Reply:
    """Dispatch one authenticated WS-Man request."""
    act = req.action
    res = req.resource_uri
    if (res.startswith(WMI) and act in (ACT_ENUMERATE, ACT_PULL, ACT_GET)) or (
        res.lower().endswith("/stdregprov") and act.startswith(res + "/")
    ):
        faulted = _wmi_fault_check(st, req)
        if faulted is not None:
            faulted.delay_ms = st.host.wmi_ms
            return faulted
    if act == ACT_ENUMERATE:
        r = _enumerate(st, req)
    elif act == ACT_PULL:
        r = _pull(st, req)
    elif act == ACT_RELEASE:
        ctx = _text(req.body, "EnumerationContext") or ""
        st.enumerations.pop(ctx.strip(), None)
        return Reply(200, envelope(ACT_RELEASE + "Response", req.message_id, ""))
    elif act == ACT_GET:
        r = _get(st, req)
    elif res.startswith(WMI) and act.startswith(res + "/"):
        r = _stdregprov(st, req, act[len(res) + 1 :])
    elif res == SHELL_URI or act.startswith(SHELL_ACTIONS):
        from scanner.lab.shell import handle_shell

        return handle_shell(st, req)
    else:
        return fault(
            req.message_id,
            F_ACTION,
            "The WS-Management service cannot process the request because the action is not supported.",
            value="s:Sender",
            subcode="a:ActionNotSupported",
            machine=st.machine,
        )
    r.delay_ms += st.host.wmi_ms
    return r


def _class_from_uri(res: str) -> tuple[str, str] | None:
    """Split a WMI resource URI into (namespace, class)."""
    if not res.startswith(WMI):
        return None
    ns, _, cls = res[len(WMI) :].rpartition("/")
    return ns.lower(), cls


# WMI provider errors as WinRM wraps them: (fault code, what WMI said, subcode, WBEM error code).
_WMI_FAULTS = {
    "namespace": (F_WMI_NAMESPACE, "invalid namespace", "w:InvalidResourceURI", 2147749902),
    "class": (F_WMI_CLASS, "invalid class", "w:DestinationUnreachable", 2147749904),
    "query": (F_WMI_CLASS, "invalid query", "w:CannotProcessFilter", 2147749911),
}


def _wmi_fault(kind: str, st: HostState, req: Request) -> Reply:
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


def _items_for(st: HostState, fields: str) -> str | None:
    """Render the enumeration item for a WQL field list; None when a field is unknown."""
    if fields.strip() == "*":
        return st.os_xml.full
    parts = []
    for f in fields.split(","):
        got = st.os_xml.fragments.get(f.strip().lower())
        if got is None:
            return None
        parts.append(got)
    parts.sort(key=lambda p: p[0].lower())
    return "<w:XmlFragment>" + "".join(dict(parts).values()) + "</w:XmlFragment>"


def _enumerate(st: HostState, req: Request) -> Reply:
    res = req.resource_uri
    body = req.body
    filt = _child(body, "Filter")
    if filt is not None:
        if filt.get("Dialect") != WQL:
            return fault(
                req.message_id,
                F_SCHEMA,
                "The WS-Management service does not support the specified filter dialect.",
                value="s:Sender",
                subcode="w:FilterDialectRequestedUnavailable",
                machine=st.machine,
            )
        if res.rstrip("/") != WMI_CIMV2 + "*" and not res.lower().startswith((WMI_CIMV2 + "*").lower()):
            parsed = _class_from_uri(res)
            if parsed is None or parsed[0] != "root/cimv2":
                return _wmi_fault("namespace", st, req)
        m = _WQL.match(filt.text or "")
        if not m:
            return _wmi_fault("query", st, req)
        if m.group("cls").lower() != "win32_operatingsystem":
            return _wmi_fault("class", st, req)
        item = _items_for(st, m.group("fields"))
        if item is None:
            return _wmi_fault("query", st, req)
    else:
        parsed = _class_from_uri(res)
        if parsed is None or parsed[0] != "root/cimv2":
            return _wmi_fault("namespace", st, req)
        if parsed[1].lower() != "win32_operatingsystem":
            return _wmi_fault("class", st, req)
        item = st.os_xml.full
    if _child(body, "OptimizeEnumeration") is not None:
        out = (
            f"<n:EnumerateResponse><n:EnumerationContext></n:EnumerationContext><w:Items>{item}</w:Items>"
            f"<w:EndOfSequence/></n:EnumerateResponse>"
        )
        return Reply(200, envelope(ACT_ENUMERATE + "Response", req.message_id, out))
    ctx = _uuid()
    st.enumerations[ctx] = item
    while len(st.enumerations) > MAX_ENUMERATIONS:
        st.enumerations.popitem(last=False)
    out = f"<n:EnumerateResponse><n:EnumerationContext>{ctx}</n:EnumerationContext></n:EnumerateResponse>"
    return Reply(200, envelope(ACT_ENUMERATE + "Response", req.message_id, out))


def _pull(st: HostState, req: Request) -> Reply:
    ctx = (_text(req.body, "EnumerationContext") or "").strip()
    item = st.enumerations.pop(ctx, None)
    if item is None:
        return fault(
            req.message_id,
            F_BAD_CONTEXT,
            CANNOT + " because the enumeration context is not valid.",
            value="s:Sender",
            subcode="n:InvalidEnumerationContext",
            machine=st.machine,
        )
    out = f"<n:PullResponse><n:Items>{item}</n:Items><n:EndOfSequence/></n:PullResponse>"
    return Reply(200, envelope(ACT_PULL + "Response", req.message_id, out))


def _get(st: HostState, req: Request) -> Reply:
    parsed = _class_from_uri(req.resource_uri)
    if parsed is None or parsed[0] != "root/cimv2":
        return _wmi_fault("namespace", st, req)
    if parsed[1].lower() != "win32_operatingsystem":
        return _wmi_fault("class", st, req)
    if req.selectors and {k.lower() for k in req.selectors} != {"name"}:
        return fault(
            req.message_id,
            F_BAD_SELECTOR,
            CANNOT + " because the request contained invalid selectors for the resource.",
            value="s:Sender",
            subcode="w:InvalidSelectors",
            machine=st.machine,
        )
    return Reply(200, envelope(ACT_GET + "Response", req.message_id, st.os_xml.full))


# ---------------------------------------------------------------- StdRegProv

_GET_METHODS = {
    "GetDWORDValue": ("REG_DWORD",),
    "GetQWORDValue": ("REG_QWORD",),
    "GetStringValue": ("REG_SZ",),
    "GetExpandedStringValue": ("REG_EXPAND_SZ",),
    "GetMultiStringValue": ("REG_MULTI_SZ",),
    "GetBinaryValue": ("REG_BINARY",),
}
_ENV = {
    "systemroot": "C:\\WINDOWS",
    "windir": "C:\\WINDOWS",
    "programfiles": "C:\\Program Files",
    "systemdrive": "C:",
}


def _expand(s: str) -> str:
    return re.sub(r"%([^%]+)%", lambda m: _ENV.get(m.group(1).lower(), m.group(0)), s)


def _stdregprov(st: HostState, req: Request, method: str) -> Reply:
    res = req.resource_uri
    parsed = _class_from_uri(res)
    if parsed is None or parsed[0] not in ("root/default", "root/cimv2"):
        return _wmi_fault("namespace", st, req)
    if parsed[1].lower() != "stdregprov":
        return _wmi_fault("class", st, req)
    if parsed[0] == "root/cimv2" and st.host.os.nt < (6, 0):
        return _wmi_fault("class", st, req)  # StdRegProv moved into root/cimv2 with Vista
    body = req.body
    if body is None or _local(body.tag) != f"{method}_INPUT" or (_ns(body.tag) and _ns(body.tag) != res):
        return fault(
            req.message_id,
            F_SCHEMA,
            "The WS-Management service cannot process the request because the XML is invalid.",
            value="s:Sender",
            subcode="w:SchemaValidationError",
            machine=st.machine,
        )
    if method not in _GET_METHODS and method not in ("EnumValues", "EnumKey"):
        return fault(
            req.message_id,
            F_ACTION,
            "The WS-Management service cannot process the request. The method is not found.",
            value="s:Sender",
            subcode="a:ActionNotSupported",
            provider=True,
            wmi_code=2147749907,
            machine=st.machine,
        )
    try:
        hive = int(_text(body, "hDefKey") or str(HKLM))
    except ValueError:
        hive = -1
    subkey = (_text(body, "sSubKeyName") or "").strip("\\")
    value_name = _text(body, "sValueName") or ""
    out: list[str] = []
    rv = RV_OK
    key = st.host.key(subkey) if hive == HKLM else None
    if hive not in KNOWN_HIVES:
        rv = RV_BAD_HIVE
    elif key is None:
        rv = RV_NO_KEY
    elif subkey.lower() in st.host.denied:
        rv = RV_DENIED
    elif method == "EnumValues":
        if key.values:
            names = [v[0] for v in key.values.values()]
            types = [TYPE_CODES[v[1]] for v in key.values.values()]
            out.extend(f"<p:sNames>{x(n)}</p:sNames>" for n in names)
            out.extend(f"<p:Types>{t}</p:Types>" for t in types)
    elif method == "EnumKey":
        if key.subkeys:
            out.extend(f"<p:sNames>{x(n)}</p:sNames>" for n in sorted(key.subkeys.values(), key=str.lower))
        else:
            out.append('<p:sNames xsi:nil="true"/>')
    else:
        stored = key.values.get(value_name.lower())
        if stored is None:
            rv = RV_NO_VALUE
        elif stored[1] not in _GET_METHODS[method]:
            rv = RV_TYPE_MISMATCH
        else:
            data = stored[2]
            if method in ("GetDWORDValue", "GetQWORDValue"):
                out.append(f"<p:uValue>{data}</p:uValue>")
            elif method == "GetStringValue":
                out.append(f"<p:sValue>{x(str(data))}</p:sValue>")
            elif method == "GetExpandedStringValue":
                out.append(f"<p:sValue>{x(_expand(str(data)))}</p:sValue>")
            elif method == "GetMultiStringValue":
                assert isinstance(data, list)
                out.extend(f"<p:sValue>{x(s)}</p:sValue>" for s in data)
            else:
                out.extend(f"<p:uValue>{b}</p:uValue>" for b in bytes.fromhex(str(data)))
    out.append(f"<p:ReturnValue>{rv}</p:ReturnValue>")
    body_xml = f"<p:{method}_OUTPUT xmlns:p={quoteattr(res)}>{''.join(out)}</p:{method}_OUTPUT>"
    return Reply(200, envelope(f"{res}/{method}Response", req.message_id, body_xml))


# ---------------------------------------------------------------- Identify


def identify(host: Host | None) -> bytes:
    """Answer wsmid:Identify; the OS version appears only to authenticated callers (as on Windows)."""
    ver = "OS: 0.0.0 SP: 0.0 Stack: 3.0"
    if host is not None:
        ver = f"OS: {host.os.version} SP: {host.os.service_pack}.0 Stack: 3.0"
    return (
        f'<s:Envelope xml:lang="en-US" xmlns:s="{NS_S}"><s:Header/><s:Body>'
        f'<wsmid:IdentifyResponse xmlns:wsmid="{NS_WSMID}">'
        f"<wsmid:ProtocolVersion>{NS_W}</wsmid:ProtocolVersion>"
        f"<wsmid:ProductVendor>Microsoft Corporation</wsmid:ProductVendor>"
        f"<wsmid:ProductVersion>{ver}</wsmid:ProductVersion>"
        f"<wsmid:SecurityProfiles><wsmid:SecurityProfileName>"
        f"http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/http/spnego-kerberos"
        f"</wsmid:SecurityProfileName></wsmid:SecurityProfiles>"
        f"</wsmid:IdentifyResponse></s:Body></s:Envelope>"
    ).encode()


def is_identify(body: bytes) -> bool:
    """Tell an Identify request (no Action header, wsmid:Identify body) from the rest."""
    return b"Identify" in body and NS_WSMID.encode() in body and b"Action>" not in body
