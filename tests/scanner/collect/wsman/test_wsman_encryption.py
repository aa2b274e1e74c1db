"""MS-WSMV 2.2.9.1.1 framing around real NTLM sealing: round trip, tampering, bad framing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.collect.wsman.encryption import BOUNDARY, SPNEGO_ENCRYPTED, content_type, decrypt, encrypt, is_encrypted
from scanner.collect.wsman.errors import CollectError
from scanner.core.gsswrap import RC4_PADDING

MESSAGE = b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body/></s:Envelope>'


def test_round_trip_both_directions(ntlm_pair: tuple[Any, Any]) -> None:
    client, server = ntlm_pair
    framed = encrypt(client, SPNEGO_ENCRYPTED, MESSAGE)
    assert framed.startswith(BOUNDARY + b"\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n")
    assert f"Length={len(MESSAGE)}\r\n".encode() in framed
    assert framed.endswith(BOUNDARY + b"--\r\n")
    assert MESSAGE not in framed
    assert decrypt(server, SPNEGO_ENCRYPTED, framed) == MESSAGE
    reply = encrypt(server, SPNEGO_ENCRYPTED, b"<reply/>" * 50)
    assert decrypt(client, SPNEGO_ENCRYPTED, reply) == b"<reply/>" * 50


def test_matches_pywinrm_framing(ntlm_pair: tuple[Any, Any]) -> None:
    """What pywinrm's Encryption (the reference client) sends is what we accept, and vice versa."""
    from winrm.encryption import Encryption

    client, server = ntlm_pair

    class SessionSecurity:
        def wrap(self, data: bytes) -> tuple[bytes, bytes]:
            result = client.wrap_winrm(data)
            return result.data, result.header

        def unwrap(self, data: bytes, signature: bytes) -> bytes:
            return bytes(client.unwrap_winrm(signature, data))

    class Auth:
        session_security = SessionSecurity()

    class Session:
        auth = Auth()

    # Only pywinrm's public API: the request it would send, and how it reads an encrypted reply.
    pywinrm = Encryption(Session(), "ntlm")  # type: ignore[arg-type]
    request = pywinrm.prepare_encrypted_request(requests.Session(), "http://host:5985/wsman", MESSAGE)
    assert request.headers["Content-Type"] == content_type(SPNEGO_ENCRYPTED)
    assert isinstance(request.body, bytes)
    assert decrypt(server, SPNEGO_ENCRYPTED, request.body) == MESSAGE

    reply = SimpleNamespace(  # what parse_encrypted_response reads of a requests.Response
        headers={"Content-Type": content_type(SPNEGO_ENCRYPTED)},
        content=encrypt(server, SPNEGO_ENCRYPTED, b"<ok/>"),
        request=request,
    )
    assert pywinrm.parse_encrypted_response(reply) == b"<ok/>"  # type: ignore[arg-type]


def test_tampered_ciphertext_is_bad_encryption(ntlm_pair: tuple[Any, Any]) -> None:
    client, server = ntlm_pair
    framed = bytearray(encrypt(server, SPNEGO_ENCRYPTED, MESSAGE))
    framed[-30] ^= 0x01  # inside the sealed data
    with pytest.raises(CollectError) as info:
        decrypt(client, SPNEGO_ENCRYPTED, bytes(framed))
    assert info.value.reason == "bad_encryption"


def test_wrong_original_length_is_bad_encryption(ntlm_pair: tuple[Any, Any]) -> None:
    client, server = ntlm_pair
    framed = encrypt(server, SPNEGO_ENCRYPTED, MESSAGE).replace(
        f"Length={len(MESSAGE)}".encode(), f"Length={len(MESSAGE) + 1}".encode()
    )
    with pytest.raises(CollectError) as info:
        decrypt(client, SPNEGO_ENCRYPTED, framed)
    assert info.value.reason == "bad_encryption"
    assert "tampered" in info.value.message


@pytest.mark.parametrize(
    "body",
    [
        MESSAGE,
        BOUNDARY + b"--\r\n",
        BOUNDARY + b"\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n" + BOUNDARY + b"--\r\n",
        BOUNDARY
        + b"\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n\tOriginalContent: Length=5\r\n"
        + BOUNDARY
        + b"\r\n\tContent-Type: application/octet-stream\r\n\xff\xff\xff\x7f"
        + BOUNDARY
        + b"--\r\n",
    ],
)
def test_bad_framing(ntlm_pair: tuple[Any, Any], body: bytes) -> None:
    client, _server = ntlm_pair
    with pytest.raises(CollectError) as info:
        decrypt(client, SPNEGO_ENCRYPTED, body)
    assert info.value.reason == "bad_encryption"


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_arbitrary_bodies_only_raise_bad_encryption(ntlm_pair: tuple[Any, Any], junk: bytes) -> None:
    client, _server = ntlm_pair
    body = BOUNDARY + b"\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n" + junk
    with pytest.raises(CollectError) as info:
        decrypt(client, SPNEGO_ENCRYPTED, body + BOUNDARY + b"--\r\n")
    assert info.value.reason == "bad_encryption"


def test_content_type_detection() -> None:
    header = content_type(SPNEGO_ENCRYPTED)
    assert is_encrypted(header, SPNEGO_ENCRYPTED)
    assert is_encrypted(header.upper(), SPNEGO_ENCRYPTED)
    assert not is_encrypted("application/soap+xml;charset=UTF-8", SPNEGO_ENCRYPTED)
    assert not is_encrypted(header, "application/HTTP-CredSSP-session-encrypted")


class Rc4Sealer:
    """A stand-in for an RC4 Kerberos context as MIT krb5 behaves through pyspnego.

    Measured against the Samba DC (tests/ad/test_kerberos_scan.py, the RC4 test): the header is an
    RFC 4757 token (first byte 0x60, RFC 2743 3.1 framing), wrap pads one byte of value 1
    (padding_length 1), and unwrap_winrm returns the data with that byte still on it. Not
    cryptography: the data is XORed with 0x5A so it is not in clear.
    """

    HEADER = b"\x60\x2b\x06\x09" + b"K" * 41

    def wrap_winrm(self, data: bytes) -> Any:
        from spnego import WinRMWrapResult

        sealed = bytes(b ^ 0x5A for b in data + RC4_PADDING)
        return WinRMWrapResult(header=self.HEADER, data=sealed, padding_length=len(RC4_PADDING))

    def unwrap_winrm(self, header: bytes, data: bytes) -> bytes:
        assert header == self.HEADER
        return bytes(b ^ 0x5A for b in data)


@pytest.mark.parametrize("size", [0, 1, 7, 8, 86, 1000])
def test_original_length_counts_the_wrap_padding(size: int) -> None:
    # MS-WSMV 2.2.9.1.1.2.2: with RC4 the OriginalContent length includes the padding.
    message = b"x" * size
    framed = encrypt(Rc4Sealer(), SPNEGO_ENCRYPTED, message)
    assert f"Length={size + 1}\r\n".encode() in framed
    octet = framed.split(b"\tContent-Type: application/octet-stream\r\n", 1)[1]
    header = Rc4Sealer.HEADER
    assert octet[:4] == len(header).to_bytes(4, "little")  # header length, then the header, then data + padding
    assert octet[4 : 4 + len(header)] == header
    assert len(octet[4 + len(header) :].removesuffix(BOUNDARY + b"--\r\n")) == size + 1


@pytest.mark.parametrize("size", [0, 1, 86, 1000])
def test_an_rc4_reply_is_read_without_its_padding(size: int) -> None:
    message = b"<s:Envelope/>" + b"y" * size
    framed = encrypt(Rc4Sealer(), SPNEGO_ENCRYPTED, message)  # what an RC4 peer sends: Length counts the pad
    assert decrypt(Rc4Sealer(), SPNEGO_ENCRYPTED, framed) == message


def test_an_rc4_reply_declaring_the_length_without_padding_is_bad_encryption() -> None:
    framed = encrypt(Rc4Sealer(), SPNEGO_ENCRYPTED, MESSAGE)
    short = framed.replace(f"Length={len(MESSAGE) + 1}".encode(), f"Length={len(MESSAGE)}".encode())
    with pytest.raises(CollectError) as caught:
        decrypt(Rc4Sealer(), SPNEGO_ENCRYPTED, short)
    assert caught.value.reason == "bad_encryption"


def test_an_unpadded_rc4_reply_as_windows_sends_it_is_read_whole() -> None:
    # Windows' WinRM seals RC4 with no padding and declares the message's length
    # (https://github.com/krb5/krb5/pull/1093); nothing may be taken off it.
    class Windows(Rc4Sealer):
        def wrap_winrm(self, data: bytes) -> Any:
            from spnego import WinRMWrapResult

            return WinRMWrapResult(header=self.HEADER, data=bytes(b ^ 0x5A for b in data), padding_length=0)

    framed = encrypt(Windows(), SPNEGO_ENCRYPTED, MESSAGE)
    assert f"Length={len(MESSAGE)}\r\n".encode() in framed
    assert decrypt(Rc4Sealer(), SPNEGO_ENCRYPTED, framed) == MESSAGE


def test_ntlm_original_length_is_the_plaintext_length(ntlm_pair: tuple[Any, Any]) -> None:
    client, _ = ntlm_pair
    assert client.wrap_winrm(MESSAGE).padding_length == 0
    assert f"Length={len(MESSAGE)}\r\n".encode() in encrypt(client, SPNEGO_ENCRYPTED, MESSAGE)


def test_lab_acceptor_checks_the_declared_length(ntlm_pair: tuple[Any, Any]) -> None:
    """The lab's acceptor: Length must be the unwrapped length, padding included, as Windows checks it."""
    from scanner.lab.auth import LengthMismatch, decrypt_body

    class Lab:
        def __init__(self, context: Any) -> None:
            self.context = context

        def unwrap(self, signature: bytes, sealed: bytes) -> bytes:
            return bytes(self.context.unwrap_winrm(signature, sealed))

    padded = encrypt(Rc4Sealer(), SPNEGO_ENCRYPTED, MESSAGE)
    assert decrypt_body(Lab(Rc4Sealer()), padded) == MESSAGE  # type: ignore[arg-type]
    unpadded = padded.replace(f"Length={len(MESSAGE) + 1}".encode(), f"Length={len(MESSAGE)}".encode())
    with pytest.raises(LengthMismatch):
        decrypt_body(Lab(Rc4Sealer()), unpadded)  # type: ignore[arg-type]
    client, server = ntlm_pair
    wrong = encrypt(client, SPNEGO_ENCRYPTED, MESSAGE).replace(
        f"Length={len(MESSAGE)}".encode(), f"Length={len(MESSAGE) + 1}".encode()
    )
    with pytest.raises(LengthMismatch):
        decrypt_body(Lab(server), wrong)  # type: ignore[arg-type]
