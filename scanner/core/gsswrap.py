"""The padding a Kerberos RC4 wrap leaves on WinRM's sealed data, and taking it off.

MS-WSMV 2.2.9.1.1.2.2: the `OriginalContent: ...;Length=` of an encrypted part counts the wrap's
padding, so a receiver checks the unwrapped length, padding included, against it and then takes the
padding off before it parses the SOAP message.

- NTLM (MS-NLMP 3.4.3) and Kerberos with an AES key (RFC 4121 4.2.4, "CFX" tokens: the first two
  bytes are 05 04) seal without padding: the unwrapped data is the message.
- Kerberos with an RC4-HMAC key uses the older token format (RFC 4757 7.3, framed as RFC 2743 3.1:
  the first byte is 0x60). RC4 is a stream cipher with a block size of 1, so the wrap pads with
  exactly one byte of value 1 (the RFC 1964 1.2.2.3 rule: pad bytes hold the pad length), and MIT
  krb5's unwrap of WinRM's header/data split returns that byte with the data.
"""

from __future__ import annotations

FRAMED_TOKEN = 0x60  # RFC 2743 3.1: [APPLICATION 0] IMPLICIT SEQUENCE, the framing of RFC 1964/4757 tokens
RC4_PADDING = b"\x01"


def unpad(header: bytes, unwrapped: bytes) -> bytes | None:
    """Return the message without the wrap's padding, or None when the padding is not the token type's."""
    if not header or header[0] != FRAMED_TOKEN:
        return unwrapped  # NTLM signature or RFC 4121 token: nothing was padded
    if not unwrapped.endswith(RC4_PADDING):
        return None
    return unwrapped[: -len(RC4_PADDING)]
