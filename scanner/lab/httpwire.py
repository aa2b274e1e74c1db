"""HTTP as HTTP.sys speaks it for WinRM: response heads, the Server header per persona, request heads."""

from __future__ import annotations

import time
from email.utils import formatdate

# HTTP.sys names its API version in every reply: 2.0 since Windows Vista / Server 2008, 1.0 on
# XP SP2 and Server 2003 (the WinRM 1.1 persona).
SERVER = b"Microsoft-HTTPAPI/2.0"
SERVER_LEGACY = b"Microsoft-HTTPAPI/1.0"
SOAP_TYPE = b"application/soap+xml;charset=UTF-8"
REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    405: b"Method Not Allowed",
    411: b"Length Required",
    413: b"Request Entity Too Large",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
}
PROXY_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n"
    b"<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)

_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """Return the Date header value, computed once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode())
    return _date_cache[1]


def response(
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes | None = SOAP_TYPE,
    length: int | None = None,
    server: bytes = SERVER,
) -> bytes:
    """Render a response head (+ body): HTTP.sys always sends Content-Length."""
    out = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Unknown"))]
    if content_type is not None and (body or length):
        out.append(b"Content-Type: " + content_type + b"\r\n")
    out.append(b"Server: " + server + b"\r\n")
    for k, v in headers or ():
        out.append(k + b": " + v + b"\r\n")
    out.append(b"Date: " + http_date() + b"\r\n")
    out.append(b"Content-Length: %d\r\n\r\n" % (len(body) if length is None else length))
    out.append(body)
    return b"".join(out)


def parse_head(head: bytes) -> tuple[bytes, bytes, dict[bytes, bytes]] | None:
    """Split a request head into (method, path, lower-case headers); None when it is not HTTP/1.x."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return None
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if not line:
            continue
        k, sep, v = line.partition(b":")
        if not sep:
            return None
        headers[k.strip().lower()] = v.strip()
    return parts[0], parts[1], headers
