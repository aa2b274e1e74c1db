"""Read a WS-Management fault in any of the shapes Windows sends and classify it by family.

A fault carries up to four numeric codes, in these places (docs/wire.md lists every shape with its
source):

- ``s:Detail/f:WSManFault/@Code``: the WinRM error (wsmerror.h, facility 0x33), a Win32 error (5)
  or an HRESULT (0x80070005);
- ``f:WSManFault/f:Message/f:ProviderFault/f:WSManFault/@Code``: the provider's own code;
- ``s:Detail/p:MSFT_WmiError/p:error_Code``: WinRM 3.0 and later (Windows 8 / 2012, WMF 3.0) add
  this CIM error, and send some faults with it alone, no ``f:WSManFault`` at all (the
  concurrent-operations quota, pywinrm PR https://github.com/diyan/pywinrm/pull/382);
- ``p:__ExtendedStatus/p:StatusCode``: WMI's extended status inside a WinRM 1.1/2.0 provider fault.

Each code is looked up in a table of families (quota, access denied, not found, timeout, invalid
selectors, not supported, request rejected); the first code that belongs to a family decides, in
the order above. A fault whose codes are all unknown is classified by its SOAP subcode
(``w:AccessDenied``, ``w:QuotaLimit``...), then by its English text, and otherwise stays
``wsman_fault`` with every code in the message.
"""

from __future__ import annotations

from dataclasses import dataclass

from scanner.collect.wsman.errors import CollectError, HttpStatusError
from scanner.collect.wsman.xmlsafe import Element, parse
from scanner.core.models import Stage

SOAP_NS = "http://www.w3.org/2003/05/soap-envelope"
WSMANFAULT_NS = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
MAX_TEXT = 300

# Families: reason code -> the codes that belong to it. WinRM codes are wsmerror.h's ERROR_WSMAN_*
# (Windows SDK); WBEM codes are wbemcli.h's WBEM_E_*; the rest are winerror.h.
FAMILIES: dict[str, frozenset[int]] = {
    "quota": frozenset(
        {
            2150858815,  # 0x8033803F ERROR_WSMAN_QUOTA_LIMIT
            2150859173,  # 0x803381A5 ERROR_WSMAN_QUOTA_MAX_SHELLS
            2150859174,  # 0x803381A6 ERROR_WSMAN_QUOTA_MAX_OPERATIONS
            2150859175,  # 0x803381A7 ERROR_WSMAN_QUOTA_USER
            2150859176,  # 0x803381A8 ERROR_WSMAN_QUOTA_SYSTEM
            2150859179,  # 0x803381AB ERROR_WSMAN_QUOTA_MAX_SHELLUSERS
            *range(2150859236, 2150859243),  # 0x803381E4-EA ERROR_WSMAN_QUOTA_*_PPQ
            2147749996,  # 0x8004106C WBEM_E_QUOTA_VIOLATION
        }
    ),
    "access_denied": frozenset(
        {
            5,  # ERROR_ACCESS_DENIED, with w:AccessDenied
            2147942405,  # 0x80070005 E_ACCESSDENIED, with w:InternalError
            2147749891,  # 0x80041003 WBEM_E_ACCESS_DENIED
            2150859012,  # 0x80338104 ERROR_WSMAN_WMI_SVC_ACCESS_DENIED
            2150859013,  # 0x80338105 ERROR_WSMAN_WMI_PROVIDER_ACCESS_DENIED
            2150859014,  # 0x80338106 ERROR_WSMAN_WMI_CANNOT_CONNECT_ACCESS_DENIED
        }
    ),
    "wmi_class": frozenset(
        {
            2150858752,  # 0x80338000 ERROR_WSMAN_RESOURCE_NOT_FOUND
            2150858754,  # 0x80338002 ERROR_WSMAN_INVALID_URI
            2150858778,  # 0x8033801A ERROR_WSMAN_ENUMERATE_CANNOT_PROCESS_FILTER
            2150858811,  # 0x8033803B ERROR_WSMAN_INVALID_RESOURCE_URI
            2150859002,  # 0x803380FA ERROR_WSMAN_INVALID_URI_WMI_SINGLETON
            2150859003,  # 0x803380FB ERROR_WSMAN_INVALID_URI_WMI_ENUM_WQL
            2147749890,  # 0x80041002 WBEM_E_NOT_FOUND
            2147749902,  # 0x8004100E WBEM_E_INVALID_NAMESPACE
            2147749904,  # 0x80041010 WBEM_E_INVALID_CLASS
            2147749911,  # 0x80041017 WBEM_E_INVALID_QUERY
            2147749912,  # 0x80041018 WBEM_E_INVALID_QUERY_TYPE
        }
    ),
    "operation_timeout": frozenset(
        {
            2150858793,  # 0x80338029 ERROR_WSMAN_OPERATION_TIMEDOUT
            2150858780,  # 0x8033801C ERROR_WSMAN_ENUMERATE_TIMED_OUT
            2147758081,  # 0x80043001 WBEM_E_TIMED_OUT
        }
    ),
    "invalid_selectors": frozenset(
        {
            2150858813,  # 0x8033803D ERROR_WSMAN_INVALID_SELECTORS
            2150858842,  # 0x8033805A ERROR_WSMAN_INSUFFCIENT_SELECTORS (sic)
            2150858845,  # 0x8033805D ERROR_WSMAN_INVALID_SELECTOR_VALUE
            2150858847,  # 0x8033805F ERROR_WSMAN_DUPLICATE_SELECTORS
            2150858848,  # 0x80338060 ERROR_WSMAN_INVALID_TARGET_SELECTORS
            2150859032,  # 0x80338118 ERROR_WSMAN_INVALID_SELECTOR_NAME
        }
    ),
    "not_supported": frozenset(
        {
            2150858753,  # 0x80338001 ERROR_WSMAN_INVALID_ACTIONURI
            2150858771,  # 0x80338013 ERROR_WSMAN_ACTION_NOT_SUPPORTED
            2150858776,  # 0x80338018 ERROR_WSMAN_ENUMERATE_FILTERING_NOT_SUPPORTED
            2150858777,  # 0x80338019 ERROR_WSMAN_ENUMERATE_FILTER_DIALECT_REQUESTED_UNAVAILABLE
            2147749900,  # 0x8004100C WBEM_E_NOT_SUPPORTED
            2147749934,  # 0x8004102E WBEM_E_INVALID_METHOD
        }
    ),
    "request_rejected": frozenset(
        {
            2150858765,  # 0x8033800D ERROR_WSMAN_SOAP_VERSION_MISMATCH
            2150858766,  # 0x8033800E ERROR_WSMAN_SOAP_DATA_ENCODING_UNKNOWN
            2150858767,  # 0x8033800F ERROR_WSMAN_INVALID_MESSAGE_INFORMATION_HEADER
            2150858768,  # 0x80338010 ERROR_WSMAN_SOAP_FAULT_MUST_UNDERSTAND
            2150858769,  # 0x80338011 ERROR_WSMAN_MESSAGE_INFORMATION_HEADER_REQUIRED
            2150858791,  # 0x80338027 ERROR_WSMAN_INVALID_SOAP_BODY
            2150858817,  # 0x80338041 schema validation error (w:SchemaValidationError)
            2150858819,  # 0x80338043 ERROR_WSMAN_INVALID_XML
            2150858823,  # 0x80338047 ERROR_WSMAN_MAX_ENVELOPE_SIZE
            2150858824,  # 0x80338048 ERROR_WSMAN_MAX_ENVELOPE_SIZE_EXCEEDED
        }
    ),
}
_FAMILY_OF = {code: family for family, codes in FAMILIES.items() for code in codes}

# SOAP subcode local names (DMTF DSP0226 section 14, WS-Addressing, WS-Enumeration) -> family.
SUBCODES = {
    "AccessDenied": "access_denied",
    "QuotaLimit": "quota",
    "TimedOut": "operation_timeout",
    "InvalidSelectors": "invalid_selectors",
    "DestinationUnreachable": "wmi_class",
    "InvalidResourceURI": "wmi_class",
    "ActionNotSupported": "not_supported",
    "FilterDialectRequestedUnavailable": "not_supported",
    "FilteringNotSupported": "not_supported",
    "SchemaValidationError": "request_rejected",
    "InvalidMessageInformationHeader": "request_rejected",
    "MessageInformationHeaderRequired": "request_rejected",
    "EncodingLimit": "request_rejected",
    "MustUnderstand": "request_rejected",
}

# English texts that name a family when no code or subcode does (wsmerror.h message texts).
TEXTS = (
    ("the wmi service returned an 'access denied' error", "access_denied"),
    ("access is denied", "access_denied"),
    ("access denied", "access_denied"),
    ("concurrent operations", "quota"),
    ("concurrent shells", "quota"),
    ("within the time specified in operationtimeout", "operation_timeout"),
)


@dataclass(frozen=True)
class Fault:
    """What a SOAP fault says, every shape read into one place."""

    wsman_code: str | None = None  # f:WSManFault/@Code, as written
    provider_code: str | None = None  # f:ProviderFault/f:WSManFault/@Code
    wmi_code: str | None = None  # p:MSFT_WmiError/p:error_Code
    status_code: str | None = None  # p:__ExtendedStatus/p:StatusCode
    subcode: str | None = None  # s:Subcode/s:Value, prefix removed
    text: str = ""  # s:Reason/s:Text, else the first message found

    def codes(self) -> list[tuple[str, int]]:
        """Return (where, code) for every numeric code, in classification order."""
        out: list[tuple[str, int]] = []
        for where, raw in (
            ("WSManFault", self.wsman_code),
            ("ProviderFault", self.provider_code),
            ("MSFT_WmiError", self.wmi_code),
            ("__ExtendedStatus", self.status_code),
        ):
            value = _number(raw)
            if value is not None:
                out.append((where, value))
        return out


def _number(raw: str | None) -> int | None:
    if raw is None:
        return None
    text = raw.strip()
    if not text.isdigit() or len(text) > 10:
        return None
    value = int(text)
    return value if value <= 0xFFFFFFFF else None


def _clean(text: str) -> str:
    return " ".join(text.split())[:MAX_TEXT]


def _all_text(node: Element) -> str:
    return " ".join(part for n in node.iter() if (part := n.text.strip()))


def read_fault(root: Element) -> Fault | None:
    """Return the fault of a SOAP 1.2 envelope, or None when its body holds no s:Fault."""
    if root.ns != SOAP_NS or root.local != "Envelope":
        return None
    body = root.child(SOAP_NS, "Body")
    fault = body.child(SOAP_NS, "Fault") if body is not None else None
    if fault is None:
        return None
    reason = fault.find((SOAP_NS, "Reason"), (SOAP_NS, "Text"))
    text = _clean(reason.text) if reason is not None else ""
    subcode_node = fault.find((SOAP_NS, "Code"), (SOAP_NS, "Subcode"), (SOAP_NS, "Value"))
    subcode = subcode_node.text.strip().rpartition(":")[2] or None if subcode_node is not None else None
    wsman_code = provider_code = wmi_code = status_code = None
    messages: list[str] = []
    for node in fault.iter():
        if node.ns == WSMANFAULT_NS and node.local == "WSManFault":
            if wsman_code is None:
                wsman_code = node.attr("Code") or ""
            elif provider_code is None:
                provider_code = node.attr("Code") or ""
        elif node.local == "MSFT_WmiError" and wmi_code is None:
            code = node.child(None, "error_Code")
            wmi_code = code.text if code is not None else ""
            message = node.child(None, "Message")
            if message is not None:
                messages.append(message.text)
        elif node.local == "__ExtendedStatus" and status_code is None:
            code = node.child(None, "StatusCode")
            status_code = code.text if code is not None and not code.nil else None
        elif node.ns == WSMANFAULT_NS and node.local == "Message" and node.text.strip():
            messages.append(node.text)
    if not text:
        text = _clean(next((m for m in messages if m.strip()), "")) or _clean(_all_text(fault))
    return Fault(wsman_code, provider_code, wmi_code, status_code, subcode, text)


def family(fault: Fault) -> str | None:
    """Return the reason family the fault belongs to, or None when nothing in it is known."""
    for _, code in fault.codes():
        found = _FAMILY_OF.get(code)
        if found is not None:
            return found
    if fault.subcode is not None and fault.subcode in SUBCODES:
        return SUBCODES[fault.subcode]
    lowered = fault.text.lower()
    return next((name for phrase, name in TEXTS if phrase in lowered), None)


def describe(fault: Fault) -> str:
    """Return the fault for people: each code where it was found (decimal and hex), then the text."""
    parts = []
    for where, code in fault.codes():
        parts.append(f"{where} {code} (0x{code:08X})")
    if fault.wsman_code is not None and _number(fault.wsman_code) is None:
        parts.append(f"WSManFault with a non-numeric code {fault.wsman_code.strip()[:40]!r}")
    head = ", ".join(parts) or "SOAP fault without a WSManFault code"
    return f"{head}: {fault.text}" if fault.text else head


def classify(fault: Fault, status: int = 500) -> CollectError:
    """Return the classified error for a fault received with HTTP `status`."""
    prefix = "" if status == 500 else f"HTTP {status}: "
    return CollectError(Stage.COLLECT, family(fault) or "wsman_fault", prefix + describe(fault))


def fault_error(root: Element, status: int = 500) -> CollectError:
    """Classify a SOAP envelope that should hold a fault; no fault is an http_<status> error."""
    fault = read_fault(root)
    if fault is None:
        if root.ns != SOAP_NS or root.local != "Envelope":
            return CollectError(Stage.PARSE, "missing_element", "reply has no SOAP 1.2 s:Envelope")
        return CollectError(Stage.COLLECT, f"http_{status}", f"HTTP {status} without a SOAP fault")
    return classify(fault, status)


def status_error(exc: HttpStatusError) -> CollectError:
    """Turn a non-2xx reply into the fault it carries, or into http_<status> when it carries none.

    HTTP 500 is the status WinRM sends every fault with (SOAP 1.2 Part 2 section 7.5.1.2 would
    send s:Sender faults with 400): its body must be a fault, so an unreadable body is reported as
    what it is (malformed XML, an unencrypted reply on an encrypted session). Any other status
    (400, 503, a proxy's 502) is read as a fault only when the body is one; otherwise it stays
    http_<status>. An unencrypted body on an encrypted session counts only
    as a well-formed fault: it cannot carry data, only an error.
    """
    status = exc.status
    if not exc.body.strip():
        if status == 500 and not exc.handshake:
            return CollectError(Stage.COLLECT, "http_500", "HTTP 500 with an empty body")
        return exc
    try:
        root = parse(exc.body)
    except CollectError as parse_error:
        if status == 500 and not exc.unencrypted and not exc.handshake:
            return parse_error
        root = None
    if status == 500 and root is not None and not exc.unencrypted and not exc.handshake:
        return fault_error(root, status)
    fault = read_fault(root) if root is not None else None
    if fault is not None:
        error = classify(fault, status)
        if exc.handshake:
            error = CollectError(error.stage, error.reason, f"during authentication: {error.message}")
        return error
    if exc.unencrypted and status == 500 and not exc.handshake:
        return CollectError(
            Stage.PARSE, "bad_encryption", "the host sent an unencrypted reply on an encrypted session"
        )
    return exc
