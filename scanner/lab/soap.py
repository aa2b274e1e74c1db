"""SOAP/WS-Management plumbing of the lab: namespaces, actions, request parsing, reply envelopes.

Shapes follow MS-WSMV and DMTF DSP0226 as WinRM emits them (docs/lab.md, "What the lab does on the wire").
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape

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
    plain: bool = False  # sent in clear even on an encrypted session (the plain-fault fault)


def local(tag: str) -> str:
    """Return the local name of an ElementTree tag."""
    return tag.rsplit("}", 1)[-1]


def ns(tag: str) -> str:
    """Return the namespace of an ElementTree tag."""
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def parse_request(body: bytes) -> Request:
    """Parse a SOAP envelope; DTDs are refused before parsing (no entity expansion)."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise BadRequest("DTD not allowed")
    try:
        root = ET.fromstring(body)  # noqa: S314 - DTD refused above
    except ET.ParseError as exc:
        raise BadRequest(str(exc)) from None
    if local(root.tag) != "Envelope":
        raise BadRequest("not a SOAP envelope")
    action = message_id = None
    resource = ""
    selectors: dict[str, str] = {}
    options: dict[str, str] = {}
    body_el: ET.Element | None = None
    for part in root:
        name = local(part.tag)
        if name == "Header":
            for h in part:
                hn = local(h.tag)
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


def child(el: ET.Element | None, name: str) -> ET.Element | None:
    """Return the first child with this local name."""
    if el is None:
        return None
    for c in el:
        if local(c.tag) == name:
            return c
    return None


def text(el: ET.Element | None, name: str) -> str | None:
    """Return the text of the first child with this local name."""
    c = child(el, name)
    return None if c is None else (c.text or "")


def new_uuid() -> str:
    """Return a new upper-case uuid: URN, as WinRM writes MessageIDs."""
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
        f"{ENV_OPEN}{extra_ns}><s:Header><a:Action>{action}</a:Action><a:MessageID>{new_uuid()}</a:MessageID>"
        f"<a:To>{ANON}</a:To>{rel}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()
