"""WS-Management WMI operations (docs/domain.md#os-query, #stdregprov): WQL, StdRegProv and Win32_Service calls.

Envelopes come from pywinrm's ``Protocol.build_wsman_header`` + ``xmltodict.unparse``, built once
per distinct operation and cached as text with a MessageID placeholder (building one costs
~0.1 ms; the cached copy costs a string replace). Replies are parsed with `xmlsafe`, matched by
namespace + local name, and ``a:RelatesTo`` must echo our ``a:MessageID``.
"""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any, Protocol

import xmltodict  # type: ignore[import-untyped]

from scanner.collect.wsman.errors import CollectError, HttpStatusError
from scanner.collect.wsman.faults import fault_error, status_error
from scanner.collect.wsman.xmlsafe import Element, parse
from scanner.core.models import OsInfo, Stage, parse_version

SOAP_NS = "http://www.w3.org/2003/05/soap-envelope"
ADDRESSING_NS = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
ENUMERATION_NS = "http://schemas.xmlsoap.org/ws/2004/09/enumeration"
WSMAN_NS = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
WQL_DIALECT = "http://schemas.microsoft.com/wbem/wsman/1/WQL"
CIMV2_ALL = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/cimv2/*"
STDREGPROV = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/default/StdRegProv"
WIN32_SERVICE = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/cimv2/Win32_Service"
TRANSFER_GET = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get"
ENUMERATE_ACTION = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate"
PULL_ACTION = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull"
HKLM = 2147483650
OS_QUERY = "SELECT Version,BuildNumber,ServicePackMajorVersion,Caption FROM Win32_OperatingSystem"
MAX_PULLS = 4

# StdRegProv ReturnValue codes (docs/domain.md#stdregprov).
RV_OK = 0
RV_NOT_FOUND = (1, 2)
RV_ACCESS_DENIED = 5
RV_TYPE_MISMATCH = 2147749893  # 0x80041005 WBEM_E_TYPE_MISMATCH: the value exists, not as REG_DWORD

_MSGID = "00000000-0000-0000-0000-00000000feed"
_TEMPLATES: dict[tuple[Any, ...], str] = {}
_TEMPLATES_LOCK = threading.Lock()


class Sender(Protocol):
    """What the operations need from pywinrm's ``winrm.protocol.Protocol``."""

    operation_timeout_sec: int

    def build_wsman_header(
        self,
        action: str,
        resource_uri: str,
        shell_id: str | None = None,
        message_id: str | uuid.UUID | None = None,
    ) -> dict[str, Any]:
        """Return pywinrm's header dict."""

    def send_message(self, message: str) -> bytes:
        """Send and return the reply body."""


def missing(what: str) -> CollectError:
    """Return the error for a required element that is absent."""
    return CollectError(Stage.PARSE, "missing_element", f"reply has no {what}")


def _template(
    protocol: Sender,
    action: str,
    resource_uri: str,
    body: dict[str, Any] | None,
    selectors: tuple[tuple[str, str], ...] = (),
) -> str:
    key = (action, resource_uri, repr(body), selectors, protocol.operation_timeout_sec)
    text = _TEMPLATES.get(key)
    if text is None:
        envelope = protocol.build_wsman_header(action=action, resource_uri=resource_uri, message_id=_MSGID)
        if selectors:
            # DSP0226 section 7.1: one w:Selector per key property of the instance addressed.
            envelope["env:Header"]["w:SelectorSet"] = {
                "w:Selector": [{"@Name": name, "#text": value} for name, value in selectors]
            }
        envelope["env:Body"] = body
        text = xmltodict.unparse({"env:Envelope": envelope}, full_document=False)
        with _TEMPLATES_LOCK:
            if len(_TEMPLATES) < 256:  # operations are few; a cap keeps a bug from growing it forever
                _TEMPLATES[key] = text
    return text


def _check_relates_to(root: Element, message_id: str) -> None:
    relates = root.find((SOAP_NS, "Header"), (ADDRESSING_NS, "RelatesTo"))
    if relates is None or not relates.text.strip():
        raise CollectError(Stage.PARSE, "relates_to", "reply has no a:RelatesTo")
    got = relates.text.strip().lower().removeprefix("uuid:")
    if got != message_id.lower():
        raise CollectError(Stage.PARSE, "relates_to", "reply a:RelatesTo does not match our a:MessageID")


def _body(root: Element) -> Element:
    if root.ns != SOAP_NS or root.local != "Envelope":
        raise missing("SOAP 1.2 s:Envelope")
    body = root.child(SOAP_NS, "Body")
    if body is None:
        raise missing("s:Body")
    return body


def call(
    protocol: Sender,
    action: str,
    resource_uri: str,
    body: dict[str, Any] | None,
    selectors: tuple[tuple[str, str], ...] = (),
) -> Element:
    """Send one operation; return the s:Body element of a checked reply, or raise a classified error."""
    message_id = str(uuid.uuid4())
    message = _template(protocol, action, resource_uri, body, selectors).replace(_MSGID, message_id)
    try:
        raw = protocol.send_message(message)
    except HttpStatusError as exc:
        raise status_error(exc) from None
    root = parse(raw)
    body_element = _body(root)
    if body_element.child(SOAP_NS, "Fault") is not None:
        raise fault_error(root, 200)
    _check_relates_to(root, message_id)
    return body_element


# ---- Win32_OperatingSystem --------------------------------------------------------------------


def _field(item: Element, name: str) -> Element | None:
    # Both reply shapes: `SELECT *` gives p:Win32_OperatingSystem with namespaced children; a field
    # list gives w:XmlFragment with un-namespaced children. Match the local name only inside the item.
    return next(item.iter_children(None, name), None)


def _int_field(item: Element, name: str) -> int | None:
    node = _field(item, name)
    if node is None or node.nil:
        return None
    text = node.text.strip()
    return int(text) if text.isdigit() and len(text) <= 10 else None


def os_info_from_item(item: Element) -> OsInfo:
    """Read OsInfo from one Win32_OperatingSystem item (either reply shape)."""
    version_node = _field(item, "Version")
    if version_node is None or version_node.nil:
        raise CollectError(Stage.PARSE, "bad_os_version", "Win32_OperatingSystem has no Version")
    version = version_node.text.strip()
    if len(parse_version(version) or ()) < 2:  # 2 to 4 dotted numbers, as Windows reports them
        raise CollectError(
            Stage.PARSE, "bad_os_version", f"Win32_OperatingSystem.Version is not a version: {version[:40]!r}"
        )
    caption_node = _field(item, "Caption")
    caption = None if caption_node is None or caption_node.nil else caption_node.text[:1024]
    return OsInfo(
        version=version,
        build=_int_field(item, "BuildNumber"),
        service_pack=_int_field(item, "ServicePackMajorVersion"),
        caption=caption,
    )


def _items(response: Element) -> tuple[Element | None, bool, str | None]:
    """Return (first item, end of sequence, enumeration context) of an Enumerate/Pull response."""
    items = response.child(WSMAN_NS, "Items")
    if items is None:
        items = response.child(ENUMERATION_NS, "Items")
    first = items.children[0] if items is not None and items.children else None
    end = (
        response.child(WSMAN_NS, "EndOfSequence") is not None
        or response.child(ENUMERATION_NS, "EndOfSequence") is not None
    )
    context = response.child(ENUMERATION_NS, "EnumerationContext")
    return first, end, (context.text.strip() if context is not None and context.text.strip() else None)


def read_os(protocol: Sender) -> OsInfo:
    """Enumerate Win32_OperatingSystem with WQL (OptimizeEnumeration), pulling if needed."""
    body = call(
        protocol,
        ENUMERATE_ACTION,
        CIMV2_ALL,
        {
            "n:Enumerate": {
                "w:OptimizeEnumeration": None,
                "w:MaxElements": "32000",
                "w:Filter": {"@Dialect": WQL_DIALECT, "#text": OS_QUERY},
            }
        },
    )
    response = body.child(ENUMERATION_NS, "EnumerateResponse")
    if response is None:
        raise missing("n:EnumerateResponse")
    item, end, context = _items(response)
    pulls = 0
    while item is None and not end:
        if context is None:
            raise missing("n:EnumerationContext to pull from")
        if pulls >= MAX_PULLS:
            raise CollectError(
                Stage.COLLECT, "unexpected_return", f"no Win32_OperatingSystem after {MAX_PULLS} pulls"
            )
        pulls += 1
        # The context is host-supplied text: xmltodict escapes it. Not cached (it varies).
        message_body = {"n:Pull": {"n:EnumerationContext": context, "n:MaxElements": "32000"}}
        pulled = call(protocol, PULL_ACTION, CIMV2_ALL, message_body)
        response = pulled.child(ENUMERATION_NS, "PullResponse")
        if response is None:
            raise missing("n:PullResponse")
        item, end, context = _items(response)
    if item is None:
        raise missing("Win32_OperatingSystem instance")
    return os_info_from_item(item)


# ---- StdRegProv -------------------------------------------------------------------------------

REG_TYPES = {
    1: "REG_SZ",
    2: "REG_EXPAND_SZ",
    3: "REG_BINARY",
    4: "REG_DWORD",
    7: "REG_MULTI_SZ",
    11: "REG_QWORD",
}
_READERS = {
    1: "GetStringValue",
    2: "GetExpandedStringValue",
    3: "GetBinaryValue",
    7: "GetMultiStringValue",
    11: "GetQWORDValue",
}


def type_name(code: int) -> str:
    """Return the REG_* name of a registry type code."""
    return REG_TYPES.get(code, f"REG_TYPE_{code}")


def invoke(protocol: Sender, method: str, params: dict[str, str]) -> Element:
    """Invoke a StdRegProv method; return its <method>_OUTPUT element."""
    body_params: dict[str, Any] = {"@xmlns:p": STDREGPROV, "p:hDefKey": str(HKLM)}
    body_params.update({f"p:{name}": value for name, value in params.items()})
    body = call(protocol, f"{STDREGPROV}/{method}", STDREGPROV, {f"p:{method}_INPUT": body_params})
    output = body.child(STDREGPROV, f"{method}_OUTPUT")
    if output is None:
        raise missing(f"p:{method}_OUTPUT")
    return output


def _uint(node: Element | None, what: str, bits: int) -> int:
    if node is None or node.nil:
        raise missing(what)
    text = node.text.strip()
    if not re.fullmatch(r"-?\d{1,20}", text):
        raise CollectError(Stage.COLLECT, "unexpected_return", f"{what} is not an integer: {text[:40]!r}")
    value = int(text)
    limit = 1 << bits
    # uint32/uint64 in the MOF, so never negative on the wire; should a serialiser emit the signed
    # form, take its two's complement rather than report a negative DWORD (docs/domain.md#invalid-data).
    if -(limit >> 1) <= value < 0:
        value += limit
    if not 0 <= value < limit:
        raise CollectError(Stage.COLLECT, "unexpected_return", f"{what} is out of range: {text[:40]!r}")
    return value


def return_value(output: Element, namespace: str = STDREGPROV) -> int:
    """Return a WMI method's ReturnValue (uint32), StdRegProv's unless another class's namespace is given."""
    return _uint(output.child(namespace, "ReturnValue"), "ReturnValue", 32)


def access_denied(method: str, key: str) -> CollectError:
    """Return the error for StdRegProv ReturnValue 5."""
    return CollectError(Stage.COLLECT, "access_denied", f"StdRegProv.{method} on HKLM\\{key}: access denied")


def unexpected(method: str, key: str, value: int) -> CollectError:
    """Return the error for a StdRegProv ReturnValue we cannot interpret."""
    return CollectError(
        Stage.COLLECT, "unexpected_return", f"StdRegProv.{method} on HKLM\\{key} returned {value}"
    )


def get_dword(protocol: Sender, key: str, name: str) -> tuple[int, int | None]:
    """Return (ReturnValue, uValue) of GetDWORDValue."""
    output = invoke(protocol, "GetDWORDValue", {"sSubKeyName": key, "sValueName": name})
    rv = return_value(output)
    if rv != RV_OK:
        return rv, None
    return rv, _uint(output.child(STDREGPROV, "uValue"), "uValue", 32)


def enum_values(protocol: Sender, key: str) -> tuple[int, list[tuple[str, int]]]:
    """Return (ReturnValue, [(stored name, type code)]) of EnumValues."""
    output = invoke(protocol, "EnumValues", {"sSubKeyName": key})
    rv = return_value(output)
    if rv != RV_OK:
        return rv, []
    names = [n.text for n in output.iter_children(STDREGPROV, "sNames") if not n.nil]
    types = [_uint(t, "Types", 32) for t in output.iter_children(STDREGPROV, "Types") if not t.nil]
    if len(names) != len(types):
        raise CollectError(Stage.COLLECT, "unexpected_return", "EnumValues returned unequal sNames and Types")
    return rv, list(zip(names, types, strict=True))


def read_typed(protocol: Sender, key: str, name: str, code: int) -> int | str | list[str] | None:
    """Read a non-DWORD value's data with the matching Get*Value; None for types StdRegProv cannot read."""
    method = _READERS.get(code)
    if method is None:
        return None
    output = invoke(protocol, method, {"sSubKeyName": key, "sValueName": name})
    rv = return_value(output)
    if rv == RV_ACCESS_DENIED:
        raise access_denied(method, key)
    if rv != RV_OK:
        raise unexpected(method, key, rv)
    if code in (1, 2):
        node = output.child(STDREGPROV, "sValue")
        return "" if node is None or node.nil else node.text
    if code == 7:
        return [n.text for n in output.iter_children(STDREGPROV, "sValue") if not n.nil]
    if code == 3:
        return bytes(
            _uint(n, "uValue", 8) for n in output.iter_children(STDREGPROV, "uValue") if not n.nil
        ).hex()
    return _uint(output.child(STDREGPROV, "uValue"), "uValue", 64)


# ---- StdRegProv writes (docs/remediation.md#applying) -----------------------------------------
# The StdRegProv class docs (SetDWORDValue, DeleteValue, CreateKey methods): each takes hDefKey
# and sSubKeyName, the value methods sValueName, SetDWORDValue uValue; each returns a uint32
# ReturnValue, 0 on success or a Win32 error (2 not found, 5 access denied). Callers classify it.


def set_dword(protocol: Sender, key: str, name: str, value: int) -> int:
    """Return the ReturnValue of SetDWORDValue (writes the type too: an REG_SZ of that name is replaced)."""
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError("a REG_DWORD is 0..4294967295")
    # uValue always sent: the MOF's default for an absent uValue is 3, an invalid mode (docs/domain.md#modes).
    output = invoke(protocol, "SetDWORDValue", {"sSubKeyName": key, "sValueName": name, "uValue": str(value)})
    return return_value(output)


def delete_value(protocol: Sender, key: str, name: str) -> int:
    """Return the ReturnValue of DeleteValue (2 when the key or the value does not exist)."""
    return return_value(invoke(protocol, "DeleteValue", {"sSubKeyName": key, "sValueName": name}))


def create_key(protocol: Sender, key: str) -> int:
    """Return the ReturnValue of CreateKey (0 also when the key already exists)."""
    return return_value(invoke(protocol, "CreateKey", {"sSubKeyName": key}))


# ---- Win32_Service (docs/remediation.md#the-restart) ------------------------------------------
# The Win32_Service class docs: StopService and StartService take no parameters and return a
# uint32; the State property is one of SERVICE_STATES. Addressed as the instance whose key
# property Name is the service's name (WS-Man Invoke and WS-Transfer Get with a selector).

SERVICE_STATES = frozenset(
    {"Stopped", "Start Pending", "Stop Pending", "Running", "Continue Pending", "Pause Pending", "Paused", "Unknown"}
)
# The ReturnValue table shared by Win32_Service's control methods (StartService, StopService ...).
SERVICE_RETURNS = {
    0: "success",
    1: "not supported",
    2: "access denied",
    3: "dependent services running",
    4: "invalid service control",
    5: "service cannot accept control",
    6: "service not active",
    7: "service request timeout",
    8: "unknown failure",
    9: "path not found",
    10: "service already running",
    11: "service database locked",
    12: "service dependency deleted",
    13: "service dependency failure",
    14: "service disabled",
    15: "service logon failed",
    16: "service marked for deletion",
    17: "service no thread",
    18: "status circular dependency",
    19: "status duplicate name",
    20: "status invalid name",
    21: "status invalid parameter",
    22: "status invalid service account",
    23: "status service exists",
    24: "service already paused",
}
SVC_OK = 0
SVC_ACCESS_DENIED = 2
SVC_NOT_ACTIVE = 6
SVC_ALREADY_RUNNING = 10


def service_return(code: int) -> str:
    """Return a Win32_Service method ReturnValue for people: "14 (service disabled)"."""
    return f"{code} ({SERVICE_RETURNS.get(code, 'undocumented')})"


def _service_method(protocol: Sender, service: str, method: str) -> int:
    body = call(
        protocol,
        f"{WIN32_SERVICE}/{method}",
        WIN32_SERVICE,
        {f"p:{method}_INPUT": {"@xmlns:p": WIN32_SERVICE}},
        selectors=(("Name", service),),
    )
    output = body.child(WIN32_SERVICE, f"{method}_OUTPUT")
    if output is None:
        raise missing(f"p:{method}_OUTPUT")
    return return_value(output, WIN32_SERVICE)


def stop_service(protocol: Sender, service: str) -> int:
    """Return the ReturnValue of Win32_Service.StopService on the service named `service`."""
    return _service_method(protocol, service, "StopService")


def start_service(protocol: Sender, service: str) -> int:
    """Return the ReturnValue of Win32_Service.StartService on the service named `service`."""
    return _service_method(protocol, service, "StartService")


def service_state(protocol: Sender, service: str) -> str:
    """Return the State property of the Win32_Service instance named `service` (WS-Transfer Get)."""
    body = call(protocol, TRANSFER_GET, WIN32_SERVICE, None, selectors=(("Name", service),))
    instance = body.child(WIN32_SERVICE, "Win32_Service")
    if instance is None:
        raise missing("p:Win32_Service")
    node = _field(instance, "State")
    if node is None or node.nil:
        raise missing("Win32_Service.State")
    state = node.text.strip()
    if state not in SERVICE_STATES:
        raise CollectError(
            Stage.COLLECT, "unexpected_return", f"Win32_Service.State is not a service state: {state[:40]!r}"
        )
    return state
