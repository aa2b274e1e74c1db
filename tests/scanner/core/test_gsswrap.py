"""Taking the RC4 wrap's padding byte off WinRM's unwrapped data, and only there."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scanner.core.gsswrap import FRAMED_TOKEN, unpad

NTLM_SIGNATURE = b"\x01\x00\x00\x00" + b"S" * 12  # MS-NLMP 2.2.2.9.1: version 1 first
CFX_TOKEN = b"\x05\x04\x06\xff" + b"T" * 56  # RFC 4121 4.2.6.2: TOK_ID 05 04
RC4_TOKEN = bytes([FRAMED_TOKEN, 0x2B]) + b"R" * 43  # RFC 2743 3.1 framing, RFC 4757 7.3 token


def test_ntlm_and_aes_data_is_kept_whole() -> None:
    assert unpad(NTLM_SIGNATURE, b"<a/>\x01") == b"<a/>\x01"
    assert unpad(CFX_TOKEN, b"<a/>\x01") == b"<a/>\x01"


def test_rc4_data_loses_its_one_byte_of_padding() -> None:
    assert unpad(RC4_TOKEN, b"<a/>\x01") == b"<a/>"
    assert unpad(RC4_TOKEN, b"\x01") == b""


def test_unpadded_rc4_data_is_kept_whole() -> None:
    # Windows seals RC4 replies without padding: their last byte is the message's.
    assert unpad(RC4_TOKEN, b"<a/>") == b"<a/>"
    assert unpad(RC4_TOKEN, b"<a/>\x02") == b"<a/>\x02"
    assert unpad(RC4_TOKEN, b"") == b""


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_unpad_takes_off_at_most_one_byte_and_only_for_a_framed_token(header: bytes, data: bytes) -> None:
    out = unpad(header, data)
    if header[:1] == bytes([FRAMED_TOKEN]) and data.endswith(b"\x01"):
        assert out == data[:-1]
    else:
        assert out == data
