"""Helpers for lab tests: a hand-driven NTLM + encryption client on one connection, SOAP builders."""

from __future__ import annotations

import base64
import http.client
import struct
import uuid
import xml.etree.ElementTree as ET
from typing import Any

import spnego
import xmltodict
from winrm.protocol import Protocol

USER = "LAB\\auditor"
PASSWORD = "Lab-Passw0rd!"  # test-only lab account
REG = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/default/StdRegProv"
REG_CIMV2 = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/cimv2/StdRegProv"
PA = "SYSTEM\\CurrentControlSet\\Services\\PolicyAgent"
IPSEC = "SYSTEM\\CurrentControlSet\\Services\\IPsec"
VALUE = "AssumeUDPEncapsulationContextOnSendRule"
WQL = "http://schemas.microsoft.com/wbem/wsman/1/WQL"
CIMV2_ALL = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/cimv2/*"
OS_URI = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/cimv2/Win32_OperatingSystem"
ENUMERATE = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate"
PULL = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull"
GET = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get"
NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "n": "http://schemas.xmlsoap.org/ws/2004/09/enumeration",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "cim": "http://schemas.dmtf.org/wbem/wscim/1/common",
    "os": OS_URI,
}


def protocol(endpoint: str, **kw: Any) -> Protocol:
    """Return a pywinrm Protocol with NTLM and message encryption, as a scanner would use it."""
    args: dict[str, Any] = {
        "transport": "ntlm",
        "username": USER,
        "password": PASSWORD,
        "message_encryption": "always",
    }
    args.update(kw)
    return Protocol(endpoint, **args)


def reg_request(
    p: Protocol,
    method: str,
    key: str,
    value: str | None = None,
    resource: str = REG,
    message_id: uuid.UUID | None = None,
) -> str:
    """Build a StdRegProv custom-action envelope."""
    env = p.build_wsman_header(action=f"{resource}/{method}", resource_uri=resource, message_id=message_id)
    body: dict[str, Any] = {"@xmlns:p": resource, "p:hDefKey": "2147483650", "p:sSubKeyName": key}
    if value is not None:
        body["p:sValueName"] = value
    env["env:Body"] = {f"p:{method}_INPUT": body}
    return str(xmltodict.unparse({"env:Envelope": env}))


def reg_call(
    p: Protocol, method: str, key: str, value: str | None = None, resource: str = REG
) -> dict[str, list[str]]:
    """Call StdRegProv; return output parameters by local name (repeated elements as lists)."""
    root = ET.fromstring(p.send_message(reg_request(p, method, key, value, resource)))
    out: dict[str, list[str]] = {}
    body = root.find("s:Body", NS)
    assert body is not None
    (output,) = list(body)
    assert output.tag == f"{{{resource}}}{method}_OUTPUT"
    for el in output:
        out.setdefault(el.tag.split("}")[1], []).append(el.text or "")
    return out


def enumerate_request(
    p: Protocol, wql: str, optimize: bool = True, message_id: uuid.UUID | None = None
) -> str:
    """Build a WQL Enumerate envelope."""
    env = p.build_wsman_header(action=ENUMERATE, resource_uri=CIMV2_ALL, message_id=message_id)
    enum: dict[str, Any] = {}
    if optimize:
        enum["w:OptimizeEnumeration"] = None
        enum["w:MaxElements"] = "32000"
    enum["w:Filter"] = {"@Dialect": WQL, "#text": wql}
    env["env:Body"] = {"n:Enumerate": enum}
    return str(xmltodict.unparse({"env:Envelope": env}))


def pull_request(p: Protocol, context: str) -> str:
    """Build a Pull envelope for an enumeration context."""
    env = p.build_wsman_header(action=PULL, resource_uri=CIMV2_ALL)
    env["env:Body"] = {"n:Pull": {"n:EnumerationContext": context, "n:MaxElements": "20"}}
    return str(xmltodict.unparse({"env:Envelope": env}))


def get_request(p: Protocol, resource: str = OS_URI) -> str:
    """Build a transfer Get envelope."""
    env = p.build_wsman_header(action=GET, resource_uri=resource)
    env["env:Body"] = None
    return str(xmltodict.unparse({"env:Envelope": env}))


# ---------------------------------------------------------------- hand-driven connection

BOUNDARY = b"--Encrypted Boundary"


class RawSession:
    """NTLM over one http.client connection, with MS-WSMV encryption done by hand."""

    def __init__(
        self,
        port: int,
        *,
        protocol: str = "ntlm",
        scheme: str = "Negotiate",
        password: str = PASSWORD,
        timeout: float = 10,
    ) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.client = spnego.client(USER, password, hostname="127.0.0.1", service="http", protocol=protocol)
        self.scheme = scheme
        self.sockets: set[int] = set()

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        """POST /wsman on the one connection and return the (unread) response."""
        self.conn.request(
            "POST", "/wsman", body=body, headers={"Content-Length": str(len(body)), **(headers or {})}
        )
        assert self.conn.sock is not None
        self.sockets.add(id(self.conn.sock))
        return self.conn.getresponse()

    def authenticate(self, first_body: bytes = b"") -> http.client.HTTPResponse:
        """Run the handshake, pre-emptively (no anonymous probe); return the final response, read."""
        tok = self.client.step()
        r = self.post(b"", {"Authorization": f"{self.scheme} {base64.b64encode(tok).decode()}"})
        r.read()
        assert r.status == 401, r.status
        challenge = r.getheader("WWW-Authenticate") or ""
        scheme, _, b64 = challenge.partition(" ")
        assert scheme == self.scheme
        tok = self.client.step(base64.b64decode(b64))
        r = self.post(first_body, {"Authorization": f"{self.scheme} {base64.b64encode(tok or b'').decode()}"})
        r.read()
        final = r.getheader("WWW-Authenticate")
        if r.status == 200 and final:  # SPNEGO accept-complete token carrying the acceptor's mechListMIC
            self.client.step(base64.b64decode(final.partition(" ")[2]))
        return r

    def encrypt(self, message: bytes) -> bytes:
        """Frame and seal one message (MS-WSMV 2.2.9.1.1)."""
        w = self.client.wrap_winrm(message)
        return (
            BOUNDARY + b"\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n"
            b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
            + str(len(message)).encode()
            + b"\r\n"
            + BOUNDARY
            + b"\r\n\tContent-Type: application/octet-stream\r\n"
            + struct.pack("<I", len(w.header))
            + w.header
            + w.data
            + BOUNDARY
            + b"--\r\n"
        )

    def decrypt(self, body: bytes) -> bytes:
        """Unframe and unseal a reply."""
        marker = b"\tContent-Type: application/octet-stream\r\n"
        head, payload = body.split(marker, 1)
        length = int(head.split(b"Length=")[1].split(b"\r\n")[0])
        (sig_len,) = struct.unpack("<I", payload[:4])
        sig = payload[4 : 4 + sig_len]
        sealed = payload[4 + sig_len : 4 + sig_len + length]
        assert payload[4 + sig_len + length :] == BOUNDARY + b"--\r\n"
        return bytes(self.client.unwrap_winrm(sig, sealed))

    def send(self, message: str | bytes) -> tuple[http.client.HTTPResponse, bytes]:
        """Send one encrypted SOAP message; return the response and the decrypted body."""
        data = message.encode() if isinstance(message, str) else message
        r = self.post(
            self.encrypt(data),
            {
                "Content-Type": 'multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted";'
                'boundary="Encrypted Boundary"',
            },
        )
        raw = r.read()
        return r, (self.decrypt(raw) if raw.startswith(BOUNDARY) else raw)


def relates_to(xml: bytes) -> str | None:
    """Return the RelatesTo header of a reply."""
    el = ET.fromstring(xml).find("s:Header/a:RelatesTo", NS)
    return None if el is None else el.text
