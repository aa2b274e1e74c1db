"""StdRegProv over WS-Management: Get*Value, EnumValues, EnumKey and the writes against a host's registry.

The writes (SetDWORDValue, DeleteValue, CreateKey) change the host's registry for the rest of the
lab's life, so a rescan sees them (docs/lab.md, "Applying changes").
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from xml.sax.saxutils import quoteattr

from scanner.lab.estate import HKLM, TYPE_CODES, Host, RegKey
from scanner.lab.faults import F_SCHEMA, fault, method_not_found, wmi_fault
from scanner.lab.soap import Reply, Request, envelope, local, ns, text, x
from scanner.lab.wql import class_from_uri

if TYPE_CHECKING:
    from scanner.lab.wsman import HostState

# StdRegProv ReturnValue codes (winerror.h / wbemcli.h).
RV_OK, RV_NO_VALUE, RV_NO_KEY, RV_DENIED, RV_BAD_HIVE = 0, 1, 2, 5, 6
RV_TYPE_MISMATCH = 2147749893  # WBEM_E_TYPE_MISMATCH 0x80041005
KNOWN_HIVES = {2147483648, 2147483649, HKLM, 2147483651, 2147483653}

_GET_METHODS = {
    "GetDWORDValue": ("REG_DWORD",),
    "GetQWORDValue": ("REG_QWORD",),
    "GetStringValue": ("REG_SZ",),
    "GetExpandedStringValue": ("REG_EXPAND_SZ",),
    "GetMultiStringValue": ("REG_MULTI_SZ",),
    "GetBinaryValue": ("REG_BINARY",),
}
_WRITE_METHODS = ("SetDWORDValue", "DeleteValue", "CreateKey")
# The MOF declares `[in] uint32 uValue = 3` for SetDWORDValue: a call without uValue writes 3.
MOF_DEFAULT_UVALUE = 3
_ENV = {
    "systemroot": "C:\\WINDOWS",
    "windir": "C:\\WINDOWS",
    "programfiles": "C:\\Program Files",
    "systemdrive": "C:",
}


def expand(s: str) -> str:
    """Expand %VARIABLE% references the way GetExpandedStringValue does (a few well-known ones)."""
    return re.sub(r"%([^%]+)%", lambda m: _ENV.get(m.group(1).lower(), m.group(0)), s)


def call(st: HostState, req: Request, method: str) -> Reply:
    """Run one StdRegProv method against the host's registry."""
    res = req.resource_uri
    parsed = class_from_uri(res)
    if parsed is None or parsed[0] not in ("root/default", "root/cimv2"):
        return wmi_fault("namespace", st, req)
    if parsed[1].lower() != "stdregprov":
        return wmi_fault("class", st, req)
    if parsed[0] == "root/cimv2" and st.host.os.nt < (6, 0):
        return wmi_fault("class", st, req)  # StdRegProv moved into root/cimv2 with Vista
    body = req.body
    if body is None or local(body.tag) != f"{method}_INPUT" or (ns(body.tag) and ns(body.tag) != res):
        return fault(
            req.message_id,
            F_SCHEMA,
            "The WS-Management service cannot process the request because the XML is invalid.",
            value="s:Sender",
            subcode="w:SchemaValidationError",
            machine=st.machine,
        )
    if method not in _GET_METHODS and method not in ("EnumValues", "EnumKey", *_WRITE_METHODS):
        return method_not_found(req.message_id, st.machine, st.host.winrm)
    try:
        hive = int(text(body, "hDefKey") or str(HKLM))
    except ValueError:
        hive = -1
    subkey = (text(body, "sSubKeyName") or "").strip("\\")
    value_name = text(body, "sValueName") or ""
    u_text = text(body, "uValue")
    u_value = MOF_DEFAULT_UVALUE if u_text is None else _uint32(u_text)
    if u_value is None:
        return fault(
            req.message_id,
            F_SCHEMA,
            "The WS-Management service cannot process the request because the XML is invalid.",
            value="s:Sender",
            subcode="w:SchemaValidationError",
            machine=st.machine,
        )
    out: list[str] = []
    rv = RV_OK
    key = st.host.key(subkey) if hive == HKLM else None
    if hive not in KNOWN_HIVES:
        rv = RV_BAD_HIVE
    elif method == "CreateKey":
        rv = create_key(st.host, subkey) if hive == HKLM else RV_DENIED  # other hives are not modelled
    elif key is None:
        rv = RV_NO_KEY
    elif subkey.lower() in st.host.denied:
        rv = RV_DENIED
    elif method == "SetDWORDValue":
        rv = set_value(st.host, key, value_name, "REG_DWORD", u_value)
    elif method == "DeleteValue":
        rv = delete_value(st.host, key, value_name)
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
                out.append(f"<p:sValue>{x(expand(str(data)))}</p:sValue>")
            elif method == "GetMultiStringValue":
                assert isinstance(data, list)
                out.extend(f"<p:sValue>{x(s)}</p:sValue>" for s in data)
            else:
                out.extend(f"<p:uValue>{b}</p:uValue>" for b in bytes.fromhex(str(data)))
    out.append(f"<p:ReturnValue>{rv}</p:ReturnValue>")
    body_xml = f"<p:{method}_OUTPUT xmlns:p={quoteattr(res)}>{''.join(out)}</p:{method}_OUTPUT>"
    return Reply(200, envelope(f"{res}/{method}Response", req.message_id, body_xml))


def _uint32(text_value: str) -> int | None:
    stripped = text_value.strip()
    if not stripped.isdigit() or len(stripped) > 10 or int(stripped) > 0xFFFFFFFF:
        return None
    return int(stripped)


def _writable(host: Host, path: str) -> bool:
    low = path.strip("\\").lower()
    return low not in host.write_denied and low not in host.denied


def set_value(host: Host, key: RegKey, name: str, reg_type: str, data: int | str | list[str]) -> int:
    """Write a value as RegSetValueEx does: the type is replaced, an existing value keeps its stored spelling."""
    if not _writable(host, key.name):
        return RV_DENIED
    existing = key.values.get(name.lower())
    key.values[name.lower()] = (existing[0] if existing is not None else name, reg_type, data)
    return RV_OK


def delete_value(host: Host, key: RegKey, name: str) -> int:
    """Delete a value as RegDeleteValue does: 2 (ERROR_FILE_NOT_FOUND) when there is none."""
    if not _writable(host, key.name):
        return RV_DENIED
    if name.lower() not in key.values:
        return RV_NO_KEY
    del key.values[name.lower()]
    return RV_OK


def create_key(host: Host, path: str) -> int:
    """Create a key and its missing parents as RegCreateKeyEx does; 0 when it exists already."""
    parts = [part for part in path.split("\\") if part]
    if not parts:
        return RV_OK
    if host.key(path) is not None:
        return RV_OK
    existing = max((i for i in range(1, len(parts)) if host.key("\\".join(parts[:i])) is not None), default=0)
    parent = "\\".join(parts[:existing])
    if existing and not _writable(host, parent):
        return RV_DENIED  # creating a sub-key needs KEY_CREATE_SUB_KEY on the parent
    for i in range(existing + 1, len(parts) + 1):
        stored = "\\".join(parts[:i])
        host.keys[stored.lower()] = RegKey(stored)
        if i > 1:
            above = host.key("\\".join(parts[: i - 1]))
            if above is not None:
                above.subkeys.setdefault(parts[i - 1].lower(), parts[i - 1])
    return RV_OK
