"""NTLM/Negotiate acceptor glue (pyspnego) and MS-WSMV 2.2.9.1.1 message encryption framing."""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import struct
from pathlib import Path
from typing import Any

import spnego
from spnego.exceptions import SpnegoError

from scanner.core import ntlmhash
from scanner.lab.estate import Account

PROTOCOL = b"application/HTTP-SPNEGO-session-encrypted"
BOUNDARY = b"--Encrypted Boundary"
ENCRYPTED_CONTENT_TYPE = (
    'multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted";boundary="Encrypted Boundary"'
)
_OCTET = b"\tContent-Type: application/octet-stream\r\n"


class AuthFailed(Exception):
    """The initiator's token was refused (bad credentials or a broken token)."""


def write_credential_file(accounts: list[Account], directory: Path) -> Path:
    """Write the acceptor's smbpasswd-format store with pre-computed LM/NT hashes and point pyspnego at it."""
    lines = []
    for i, acc in enumerate(accounts):
        pw = acc.password.get_secret_value()
        nt_hash = ntlmhash.nt_hash(pw)
        if nt_hash is None:
            raise RuntimeError("no MD4 available (hashlib or pyspnego) to write the lab's NTLM store")
        lm, nt = ntlmhash.lm_hash(pw).hex().upper(), nt_hash.hex().upper()
        lines.append(f"{acc.username}:{1000 + i}:{lm}:{nt}:[U]:LCT-00000000")
    path = directory / f"lab-ntlm-{secrets.token_hex(4)}.smbpasswd"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    # pyspnego's NTLM acceptor reads credentials only from this variable (spnego/_ntlm.py).
    os.environ["NTLM_USER_FILE"] = str(path)
    return path


class Acceptor:
    """One connection's security context: raw NTLMSSP or SPNEGO-wrapped, chosen by the first token."""

    def __init__(self) -> None:
        self.ctx: Any = None
        self.complete = False

    def step(self, token: bytes) -> bytes | None:
        """Feed one initiator token; return the reply token (None when nothing to send)."""
        if self.ctx is None:
            proto = "ntlm" if token.startswith(b"NTLMSSP\x00") else "negotiate"
            self.ctx = spnego.server(protocol=proto)
        try:
            out: bytes | None = self.ctx.step(token)
        except (SpnegoError, ValueError, struct.error, KeyError, IndexError) as exc:
            raise AuthFailed(type(exc).__name__) from None
        self.complete = bool(self.ctx.complete)
        return out

    def wrap(self, data: bytes) -> tuple[bytes, bytes]:
        """Seal `data`; return (signature, sealed)."""
        res = self.ctx.wrap_winrm(data)
        return res.header, res.data

    def unwrap(self, signature: bytes, sealed: bytes) -> bytes:
        """Unseal and verify one message."""
        try:
            return bytes(self.ctx.unwrap_winrm(signature, sealed))
        except (SpnegoError, ValueError) as exc:
            raise AuthFailed(type(exc).__name__) from None


def parse_auth_header(value: str) -> tuple[str, bytes] | None:
    """Split an Authorization header into (scheme, token); None when it is not one we understand."""
    scheme, _, b64 = value.strip().partition(" ")
    try:
        return scheme.lower(), base64.b64decode(b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def decrypt_body(acceptor: Acceptor, body: bytes) -> bytes:
    """Unframe and unseal a multipart/encrypted request body (MS-WSMV 2.2.9.1.1)."""
    try:
        head_end = body.index(_OCTET)
        header = body[:head_end]
        length = int(header.split(b"Length=", 1)[1].split(b"\r\n", 1)[0])
        payload = body[head_end + len(_OCTET) :]
        sig_len = struct.unpack("<I", payload[:4])[0]
        if sig_len > 1024 or len(payload) < 4 + sig_len + length:
            raise AuthFailed("truncated encrypted payload")
        signature = payload[4 : 4 + sig_len]
        sealed = payload[4 + sig_len : 4 + sig_len + length]
    except (ValueError, IndexError, struct.error) as exc:
        raise AuthFailed(f"bad encrypted framing: {type(exc).__name__}") from None
    return acceptor.unwrap(signature, sealed)


def encrypt_body(acceptor: Acceptor, message: bytes) -> bytes:
    """Seal a reply and frame it exactly as WinRM does (pywinrm's parser relies on this layout)."""
    signature, sealed = acceptor.wrap(message)
    return b"".join(
        (
            BOUNDARY,
            b"\r\n\tContent-Type: ",
            PROTOCOL,
            b"\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=",
            str(len(message)).encode(),
            b"\r\n",
            BOUNDARY,
            b"\r\n",
            _OCTET,
            struct.pack("<I", len(signature)),
            signature,
            sealed,
            BOUNDARY,
            b"--\r\n",
        )
    )
