"""The padding a Kerberos RC4 wrap may leave on WinRM's sealed data, and taking it off.

MS-WSMV 2.2.9.1.1.2.2: the `OriginalContent: ...;Length=` of an encrypted part counts the wrap's
padding, so a receiver checks the unwrapped length, padding included, against it and then takes the
padding off before it parses the SOAP message.

- NTLM (MS-NLMP 3.4.3) and Kerberos with an AES key (RFC 4121 4.2.4, "CFX" tokens: the first two
  bytes are 05 04) seal without padding: the unwrapped data is the message.
- Kerberos with an RC4-HMAC key uses the older token format (RFC 4757 7.3, framed as RFC 2743 3.1:
  the first byte is 0x60). RFC 4757 pads with one byte of value 1 (RC4's block size is 1; the
  RFC 1964 1.2.2.3 rule: pad bytes hold the pad length), and MIT krb5, which seals that way,
  returns the byte with the data when it unwraps WinRM's header/data split. Windows' WinRM seals
  RC4 replies with no padding at all (https://github.com/krb5/krb5/pull/1093, which made MIT
  unwrap them), so a last byte other than 1 is data. A SOAP message never ends in byte 1: it is
  not a character XML 1.0 allows (XML 1.0 section 2.2).
"""

from __future__ import annotations

FRAMED_TOKEN = 0x60  # RFC 2743 3.1: [APPLICATION 0] IMPLICIT SEQUENCE, the framing of RFC 1964/4757 tokens
RC4_PADDING = b"\x01"


def unpad(header: bytes, unwrapped: bytes) -> bytes:
    """Return the message without the RC4 wrap's padding byte, if the token is RC4's and carries one."""
    if header[:1] == bytes([FRAMED_TOKEN]) and unwrapped.endswith(RC4_PADDING):
        return unwrapped[: -len(RC4_PADDING)]
    return unwrapped  # NTLM signature, RFC 4121 token, or an unpadded RC4 token (Windows)
