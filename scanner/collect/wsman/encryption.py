"""MS-WSMV 2.2.9.1 message encryption: the multipart framing around GSS wrap/unwrap.

One encrypted message on the wire (MS-WSMV 2.2.9.1.1 for SPNEGO/NTLM/Kerberos, 2.2.9.1.3 CredSSP)::

    --Encrypted Boundary\\r\\n
    \\tContent-Type: application/HTTP-SPNEGO-session-encrypted\\r\\n
    \\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=<plaintext + padding length>\\r\\n
    --Encrypted Boundary\\r\\n
    \\tContent-Type: application/octet-stream\\r\\n
    <uint32 LE header length><header (NTLM signature / TLS trailer)><sealed data>
    --Encrypted Boundary--\\r\\n

pyspnego's ``wrap_winrm``/``unwrap_winrm`` give the header/data split for every protocol, so one
framing serves all. ``unwrap_winrm`` verifies the signature: a tampered reply fails there.
"""

from __future__ import annotations

import re
import struct
from typing import Protocol

from scanner.collect.wsman.errors import CollectError
from scanner.core.gsswrap import unpad
from scanner.core.models import Stage

SPNEGO_ENCRYPTED = "application/HTTP-SPNEGO-session-encrypted"
CREDSSP_ENCRYPTED = "application/HTTP-CredSSP-session-encrypted"
BOUNDARY = b"--Encrypted Boundary"
_OCTET = b"\tContent-Type: application/octet-stream\r\n"
_LENGTH = re.compile(rb"Length=(\d{1,12})")


class Wrapped(Protocol):
    """What wrap_winrm returns (pyspnego's WinRMWrapResult)."""

    @property
    def header(self) -> bytes:
        """The signature (NTLM) or per-message token (Kerberos)."""

    @property
    def data(self) -> bytes:
        """The sealed data, padding included."""

    @property
    def padding_length(self) -> int:
        """How many bytes of `data` are padding (RC4 Kerberos pads; NTLM and AES Kerberos do not)."""


class WinRMSealer(Protocol):
    """The part of a pyspnego context that message encryption needs."""

    def wrap_winrm(self, data: bytes) -> Wrapped:
        """Wrap data."""

    def unwrap_winrm(self, header: bytes, data: bytes) -> bytes:
        """Unwrap and verify data."""


def bad_encryption(detail: str) -> CollectError:
    """Return the error for a reply that breaks the encryption contract."""
    return CollectError(Stage.PARSE, "bad_encryption", detail)


def content_type(protocol: str) -> str:
    """Return the request Content-Type for an encrypted message."""
    return f'multipart/encrypted;protocol="{protocol}";boundary="Encrypted Boundary"'


def original_length(message: bytes, wrapped: Wrapped) -> int:
    """Return OriginalContent's Length: the plaintext plus the wrap's padding (MS-WSMV 2.2.9.1.1.2.2).

    With an RC4 Kerberos session key the sealed data is padded and Windows expects the padding
    counted; NTLM and AES Kerberos add none, so there it is the plaintext length.
    """
    return len(message) + wrapped.padding_length


def encrypt(context: WinRMSealer, protocol: str, message: bytes) -> bytes:
    """Seal `message` and frame it as one MS-WSMV encrypted part."""
    wrapped = context.wrap_winrm(message)
    header: bytes = wrapped.header
    return b"".join(
        (
            BOUNDARY,
            b"\r\n\tContent-Type: ",
            protocol.encode("ascii"),
            b"\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=",
            str(original_length(message, wrapped)).encode("ascii"),
            b"\r\n",
            BOUNDARY,
            b"\r\n",
            _OCTET,
            struct.pack("<I", len(header)),
            header,
            wrapped.data,
            BOUNDARY,
            b"--\r\n",
        )
    )


def is_encrypted(content_type_header: str, protocol: str) -> bool:
    """Return whether a reply's Content-Type says it is encrypted with `protocol`."""
    lowered = content_type_header.lower()
    return lowered.startswith(("multipart/encrypted", "multipart/x-multi-encrypted")) and (
        f'protocol="{protocol.lower()}"' in lowered
    )


def decrypt(context: WinRMSealer, protocol: str, body: bytes) -> bytes:
    """Unframe, unwrap and verify every encrypted part of a reply; raise bad_encryption otherwise."""
    pieces = body.split(BOUNDARY)
    # [b"", header-part, data-part, (header-part, data-part)..., b"--\r\n"]
    if len(pieces) < 4 or pieces[0] != b"" or pieces[-1].rstrip(b"\r\n") != b"--" or len(pieces) % 2 != 0:
        raise bad_encryption("encrypted reply is not framed as MS-WSMV multipart")
    out: list[bytes] = []
    for index in range(1, len(pieces) - 1, 2):
        head, part = pieces[index], pieces[index + 1]
        if protocol.encode("ascii").lower() not in head.lower():
            raise bad_encryption("encrypted part does not name the session's protocol")
        match = _LENGTH.search(head)
        if match is None:
            raise bad_encryption("encrypted part has no OriginalContent length")
        expected = int(match.group(1))
        if not part.startswith(b"\r\n" + _OCTET):
            raise bad_encryption("encrypted part has no application/octet-stream section")
        payload = part[2 + len(_OCTET) :]
        if len(payload) < 4:
            raise bad_encryption("encrypted part is truncated")
        (header_length,) = struct.unpack("<I", payload[:4])
        if header_length > len(payload) - 4:
            raise bad_encryption("encrypted part header length exceeds the part")
        header = payload[4 : 4 + header_length]
        sealed = payload[4 + header_length :]
        unwrapped = _unwrap(context, header, sealed)
        # OriginalContent counts the wrap's padding (MS-WSMV 2.2.9.1.1.2.2; scanner/core/gsswrap.py).
        if len(unwrapped) != expected:
            raise bad_encryption("decrypted length does not match OriginalContent: reply tampered with")
        out.append(unpad(header, unwrapped))
    return b"".join(out)


def _unwrap(context: WinRMSealer, header: bytes, sealed: bytes) -> bytes:
    # pyspnego raises its own SpnegoError family (BadMICError on a bad signature) and, for
    # CredSSP, ssl errors; all of them mean the same thing here.
    from spnego.exceptions import SpnegoError

    try:
        return context.unwrap_winrm(header, sealed)
    except (SpnegoError, ValueError, OSError, struct.error) as exc:
        raise bad_encryption(f"reply failed decryption/verification ({type(exc).__name__})") from None
