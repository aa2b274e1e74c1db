"""NTLM/Kerberos/Negotiate acceptor glue (pyspnego) and MS-WSMV 2.2.9.1.1 message encryption framing.

Kerberos needs a keytab with the keys of the account the hosts' HTTP/<fqdn> SPNs are registered
on (`natt-audit lab serve --keytab FILE`, docs/lab.md#kerberos): the lab process points
KRB5_KTNAME at it and GSSAPI (MIT krb5, through pyspnego) accepts any SPN of that account.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import spnego
from spnego.channel_bindings import GssChannelBindings
from spnego.exceptions import SpnegoError

from scanner.core import ntlmhash
from scanner.core.gsswrap import unpad
from scanner.lab.estate import Account
from scanner.lab.spnego_internals import (
    kerberos_channel_bound,
    ntlm_channel_binding,
    ntlm_context,
    replace_challenge,
)

PROTOCOL = b"application/HTTP-SPNEGO-session-encrypted"
BOUNDARY = b"--Encrypted Boundary"
ENCRYPTED_CONTENT_TYPE = (
    'multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted";boundary="Encrypted Boundary"'
)
_OCTET = b"\tContent-Type: application/octet-stream\r\n"
_CHALLENGE = b"NTLMSSP\x00\x02\x00\x00\x00"
_AUTHENTICATE = b"NTLMSSP\x00\x03\x00\x00\x00"  # MS-NLMP 2.2.1.3: the message that proves the password
NEGOTIATE_VERSION = 0x02000000  # MS-NLMP 2.2.2.5 NTLMSSP_NEGOTIATE_VERSION
NTLM_REVISION = 15  # MS-NLMP 2.2.2.10 NTLMSSP_REVISION_W2K3


class AuthFailed(Exception):
    """The initiator's token was refused (bad credentials or a broken token)."""


class LengthMismatch(AuthFailed):
    """The OriginalContent length does not match what the sealed part decrypts to."""


class NtlmRefused(AuthFailed):
    """NTLM offered to a host that accepts only Kerberos (`ntlm: disabled`)."""


class BindingRefused(AuthFailed):
    """A logon without the channel binding a `cbt: strict` host requires."""


def tls_server_end_point(certificate: bytes) -> GssChannelBindings:
    """Return the RFC 5929 tls-server-end-point channel bindings for a DER server certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    algorithm = x509.load_der_x509_certificate(certificate).signature_hash_algorithm
    # RFC 5929 section 4.1: the certificate's signature hash, except MD5 and SHA-1 become SHA-256.
    if algorithm is None or isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(certificate)
    return GssChannelBindings(application_data=b"tls-server-end-point:" + digest.finalize())


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


@dataclass
class LogonCount:
    """Logons one host (or the whole lab) judged: attempts = failures + successes."""

    attempts: int = 0
    failures: int = 0
    successes: int = 0

    def add(self, accepted: bool) -> None:
        """Count one judged logon."""
        self.attempts += 1
        if accepted:
            self.successes += 1
        else:
            self.failures += 1

    def to_json(self) -> dict[str, int]:
        """Return the counts as a JSON object."""
        return {"attempts": self.attempts, "failures": self.failures, "successes": self.successes}


@dataclass
class LogonCounter:
    """Every logon the lab judged, per host and in total, whatever the protocol.

    A logon is counted where its verdict is known: an acceptor finished judging the initiator's
    credentials (NTLM's AUTHENTICATE, a Kerberos AP-REQ, ...), or a Basic header was checked. A
    token that carries no credential (an NTLM NEGOTIATE), even a broken one, is not a logon: a
    domain controller would never see it. This is what a DC's failed-logon count (the lockout
    counter) would add up for the scan account.
    """

    total: LogonCount = field(default_factory=LogonCount)
    by_host: dict[str, LogonCount] = field(default_factory=dict)
    first_success: bool = False
    in_progress: int = 0  # logons begun (first token of a context received) and not yet judged
    peak_in_progress: int = 0

    def begin(self) -> None:
        """Note that a logon began: a connection's first token of a new context arrived."""
        self.in_progress += 1
        self.peak_in_progress = max(self.peak_in_progress, self.in_progress)

    def end(self) -> None:
        """Note that a logon begun earlier was judged or abandoned."""
        self.in_progress -= 1

    def record(self, host: str, accepted: bool) -> None:
        """Count one judged logon on `host`."""
        self.total.add(accepted)
        self.by_host.setdefault(host, LogonCount()).add(accepted)
        self.first_success = self.first_success or accepted

    def to_json(self) -> dict[str, object]:
        """Return the totals and the hosts that saw at least one logon."""
        return {
            **self.total.to_json(),
            "peak_concurrent": self.peak_in_progress,
            "by_host": {name: count.to_json() for name, count in sorted(self.by_host.items())},
        }


class Acceptor:
    """One connection's security context: raw NTLMSSP, raw Kerberos or SPNEGO, chosen by the first token.

    `version` is the (major, minor, build) the host's NTLM CHALLENGE announces in its VERSION field
    (MS-NLMP 2.2.2.10), as Windows does with its own version; None sends no VERSION at all.
    pyspnego would otherwise announce its own package version there. `ntlm=False` refuses NTLM
    (raw or negotiated in SPNEGO) before any CHALLENGE is sent. `bindings` (HTTPS hosts with
    `cbt: strict`) must be what the initiator bound the logon to: a wrong, absent or all-zero
    binding is refused, as Windows does with CbtHardeningLevel=Strict.

    Every logon, NTLM or Kerberos, succeeds or fails in `step`: `mechanism` then names the protocol
    ("ntlm" or "kerberos") and `complete` says whether the logon succeeded.

    `verdict` is what the server counts as a logon (`LogonCounter`): True once the context
    completes, False when a token that carried credentials (NTLM: the AUTHENTICATE message) was
    refused, None while no credential has been judged. Any other acceptor (Kerberos) sets it the
    same way, so the counts do not depend on the protocol.
    """

    def __init__(
        self,
        version: tuple[int, int, int] | None = None,
        *,
        ntlm: bool = True,
        bindings: GssChannelBindings | None = None,
    ) -> None:
        self.ctx: Any = None
        self.complete = False
        self.version = version
        self.verdict: bool | None = None
        self.ntlm = ntlm
        self.bindings = bindings
        self.mechanism: str | None = None

    def step(self, token: bytes) -> bytes | None:
        """Feed one initiator token; return the reply token (None when nothing to send)."""
        if self.ctx is None:
            raw_ntlm = token.startswith(b"NTLMSSP\x00")
            if raw_ntlm and not self.ntlm:
                self.mechanism = "ntlm"
                raise NtlmRefused("NTLM is disabled on this host")
            # "negotiate" takes SPNEGO and a bare Kerberos token (both GSS InitialContextTokens, RFC 2743 3.1).
            self.ctx = spnego.server(protocol="ntlm" if raw_ntlm else "negotiate", channel_bindings=self.bindings)
        try:
            out: bytes | None = self.ctx.step(token)
        except (SpnegoError, ValueError, struct.error, KeyError, IndexError, AttributeError) as exc:
            # AttributeError: pyspnego reads the flags of a GSSAPI context whose acceptance failed
            # (a wrong channel binding) and python-gssapi refuses that read.
            if _AUTHENTICATE in token or b"NTLMSSP\x00\x01\x00\x00\x00" not in token:
                self.verdict = False  # an NTLM AUTHENTICATE or a Kerberos AP-REQ: credentials refused
            raise AuthFailed(type(exc).__name__) from None
        self.mechanism = self.ctx.negotiated_protocol or self.mechanism
        if self.mechanism == "ntlm" and not self.ntlm:
            raise NtlmRefused("NTLM is disabled on this host")
        if self.ctx.complete and self.bindings is not None:
            try:
                self._require_binding(token)
            except BindingRefused:
                self.verdict = False
                raise
        self.complete = bool(self.ctx.complete)
        if self.complete:
            self.verdict = True
        if out is not None and not self.complete:
            out = self._set_version(out)
        return out

    def _require_binding(self, token: bytes) -> None:
        """Refuse a logon the initiator did not bind to this TLS channel (pyspnego lets that pass)."""
        if self.mechanism == "kerberos":
            bound = kerberos_channel_bound(self.ctx)
        else:
            try:
                sent = ntlm_channel_binding(token)
            except (ValueError, struct.error, KeyError, IndexError):
                sent = None
            # pyspnego already refused a binding that is there but wrong; zeros mean "none" (MS-NLMP 2.2.2.1).
            bound = sent is not None and sent != bytes(16)
        if not bound:
            raise BindingRefused("the logon carries no channel binding")

    def _set_version(self, out: bytes) -> bytes:
        """Rewrite the CHALLENGE's VERSION (same length, so SPNEGO's DER lengths hold)."""
        at = out.find(_CHALLENGE)
        ntlm = ntlm_context(self.ctx)
        if at < 0 or ntlm is None or len(out) < at + 56:
            return out
        (flags,) = struct.unpack_from("<I", out, at + 20)
        if not flags & NEGOTIATE_VERSION:
            return out  # the initiator did not ask for it (MS-NLMP 3.2.5.1.1)
        patched = bytearray(out)
        if self.version is None:
            struct.pack_into("<I", patched, at + 20, flags & ~NEGOTIATE_VERSION)
            patched[at + 48 : at + 56] = bytes(8)
        else:
            major, minor, build = self.version
            patched[at + 48 : at + 56] = struct.pack("<BBH3xB", major, minor, build, NTLM_REVISION)
        # The acceptor checks the AUTHENTICATE MIC over the CHALLENGE it sent (MS-NLMP 3.1.5.1.2): keep
        # its copy identical to the bytes on the wire.
        (name_len,) = struct.unpack_from("<H", out, at + 12)
        (name_off,) = struct.unpack_from("<I", out, at + 16)
        (info_len,) = struct.unpack_from("<H", out, at + 40)
        (info_off,) = struct.unpack_from("<I", out, at + 44)
        end = at + max(56, name_off + name_len, info_off + info_len)
        replace_challenge(ntlm, bytes(patched[at:end]))
        return bytes(patched)

    def wrap(self, data: bytes) -> tuple[bytes, bytes, int]:
        """Seal `data`; return (signature, sealed, padding length)."""
        res = self.ctx.wrap_winrm(data)
        return res.header, res.data, res.padding_length

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
    """Unframe, unseal and check a multipart/encrypted request body (MS-WSMV 2.2.9.1.1).

    The sealed data runs to the closing boundary. OriginalContent's Length must equal the
    unwrapped length, which includes the wrap's padding (MS-WSMV 2.2.9.1.1.2.2): NTLM and AES
    Kerberos do not pad, so it is the plaintext length; MIT's RC4 wrap pads one byte, and it counts
    (scanner/core/gsswrap.py). A mismatch is refused (LengthMismatch), as Windows refuses a
    message it cannot decrypt; the padding is taken off before the message is parsed.
    """
    try:
        head_end = body.index(_OCTET)
        header = body[:head_end]
        length = int(header.split(b"Length=", 1)[1].split(b"\r\n", 1)[0])
        payload = body[head_end + len(_OCTET) :]
        sig_len = struct.unpack("<I", payload[:4])[0]
        end = payload.rfind(BOUNDARY)
        if sig_len > 1024 or end < 4 + sig_len:
            raise AuthFailed("truncated encrypted payload")
        signature = payload[4 : 4 + sig_len]
        sealed = payload[4 + sig_len : end]
    except (ValueError, IndexError, struct.error) as exc:
        raise AuthFailed(f"bad encrypted framing: {type(exc).__name__}") from None
    unwrapped = acceptor.unwrap(signature, sealed)
    if length != len(unwrapped):
        raise LengthMismatch(f"OriginalContent Length={length}, unwrapped {len(unwrapped)} (padding included)")
    return unpad(signature, unwrapped)


def encrypt_body(acceptor: Acceptor, message: bytes) -> bytes:
    """Seal a reply and frame it exactly as WinRM does (pywinrm's parser relies on this layout)."""
    signature, sealed, padding = acceptor.wrap(message)
    return b"".join(
        (
            BOUNDARY,
            b"\r\n\tContent-Type: ",
            PROTOCOL,
            b"\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=",
            str(len(message) + padding).encode(),  # the padding counts (MS-WSMV 2.2.9.1.1.2.2)
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
