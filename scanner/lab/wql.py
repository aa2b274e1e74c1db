"""Win32_OperatingSystem over WS-Management: the instance, WQL Enumerate/Pull and Get."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

from scanner.lab.estate import Host
from scanner.lab.faults import F_BAD_CONTEXT, F_BAD_SELECTOR, F_SCHEMA, fault, wmi_fault
from scanner.lab.soap import (
    ACT_ENUMERATE,
    ACT_GET,
    ACT_PULL,
    CANNOT,
    NS_CIM,
    OS_URI,
    WMI,
    WMI_CIMV2,
    WQL,
    Reply,
    Request,
    child,
    envelope,
    new_uuid,
    text,
    x,
)

if TYPE_CHECKING:
    from scanner.lab.wsman import HostState

MAX_ENUMERATIONS = 64


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


def class_from_uri(res: str) -> tuple[str, str] | None:
    """Split a WMI resource URI into (namespace, class)."""
    if not res.startswith(WMI):
        return None
    ns, _, cls = res[len(WMI) :].rpartition("/")
    return ns.lower(), cls


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


def enumerate_(st: HostState, req: Request) -> Reply:
    """Answer a WQL (or class-URI) Enumerate of Win32_OperatingSystem, optimized or with a context."""
    res = req.resource_uri
    body = req.body
    filt = child(body, "Filter")
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
            parsed = class_from_uri(res)
            if parsed is None or parsed[0] != "root/cimv2":
                return wmi_fault("namespace", st, req)
        m = _WQL.match(filt.text or "")
        if not m:
            return wmi_fault("query", st, req)
        if m.group("cls").lower() != "win32_operatingsystem":
            return wmi_fault("class", st, req)
        item = _items_for(st, m.group("fields"))
        if item is None:
            return wmi_fault("query", st, req)
    else:
        parsed = class_from_uri(res)
        if parsed is None or parsed[0] != "root/cimv2":
            return wmi_fault("namespace", st, req)
        if parsed[1].lower() != "win32_operatingsystem":
            return wmi_fault("class", st, req)
        item = st.os_xml.full
    if child(body, "OptimizeEnumeration") is not None:
        out = (
            f"<n:EnumerateResponse><n:EnumerationContext></n:EnumerationContext><w:Items>{item}</w:Items>"
            f"<w:EndOfSequence/></n:EnumerateResponse>"
        )
        return Reply(200, envelope(ACT_ENUMERATE + "Response", req.message_id, out))
    ctx = new_uuid()
    st.enumerations[ctx] = item
    while len(st.enumerations) > MAX_ENUMERATIONS:
        st.enumerations.popitem(last=False)
    out = f"<n:EnumerateResponse><n:EnumerationContext>{ctx}</n:EnumerationContext></n:EnumerateResponse>"
    return Reply(200, envelope(ACT_ENUMERATE + "Response", req.message_id, out))


def pull(st: HostState, req: Request) -> Reply:
    """Answer a Pull of an open enumeration (one item, then end of sequence)."""
    ctx = (text(req.body, "EnumerationContext") or "").strip()
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


def get(st: HostState, req: Request) -> Reply:
    """Answer a Get of the Win32_OperatingSystem singleton."""
    parsed = class_from_uri(req.resource_uri)
    if parsed is None or parsed[0] != "root/cimv2":
        return wmi_fault("namespace", st, req)
    if parsed[1].lower() != "win32_operatingsystem":
        return wmi_fault("class", st, req)
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
