"""MS-WSMV 2.2.9.1.1 framing around real NTLM sealing: round trip, tampering, bad framing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.collect.wsman.encryption import BOUNDARY, SPNEGO_ENCRYPTED, content_type, decrypt, encrypt, is_encrypted
from scanner.collect.wsman.errors import CollectError

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

    pywinrm = Encryption(Session(), "ntlm")  # type: ignore[arg-type]
    framed = pywinrm._encrypt_message(MESSAGE, "host") + BOUNDARY + b"--\r\n"
    assert decrypt(server, SPNEGO_ENCRYPTED, framed) == MESSAGE

    class Response:
        content = encrypt(server, SPNEGO_ENCRYPTED, b"<ok/>")

    assert pywinrm._decrypt_response(Response(), "host") == b"<ok/>"  # type: ignore[arg-type]


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
        BOUNDARY
        + b"\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n"
        + BOUNDARY
        + b"--\r\n",
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
