"""The one place the lab reaches into pyspnego's private classes: NTLM VERSION, channel bindings.

Windows puts its version (major, minor, build) in the NTLM CHALLENGE (MS-NLMP 2.2.2.10); pyspnego's
acceptor always writes its own package version there and offers no public way to change it. The lab
rewrites the CHALLENGE bytes and must then give the acceptor the same CHALLENGE, because the
AUTHENTICATE message's MIC is computed over it (MS-NLMP 3.1.5.1.2). That needs two private names:
the NTLM context class and the CHALLENGE message parser.

A host with `cbt: strict` refuses a logon without a channel binding, as Windows does with
CbtHardeningLevel=Strict. pyspnego's acceptors check a binding that is there but let an empty
one pass (NTLM: an all-zero MsvAvChannelBindings, which MS-NLMP 2.2.2.1 defines as "none";
Kerberos: no binding in the authenticator checksum, RFC 4121 4.1.1.2), so the lab reads what the
initiator sent: the NTLM AUTHENTICATE's AV pairs (the AUTHENTICATE and NTLMv2 response parsers)
and the Kerberos context's GSS_C_CHANNEL_BOUND_FLAG (the GSSAPI context class). They are imported here only, and
tests/scanner/lab/test_spnego_internals.py fails loudly when a pyspnego release moves them.
"""

from __future__ import annotations

from typing import Any

from spnego._gss import GSSAPIProxy  # private: the Kerberos (GSSAPI) context class
from spnego._ntlm import NTLMProxy  # private: the NTLM context class (no public type exists)
from spnego._ntlm_raw.messages import (  # private: NTLM message parsers
    Authenticate,
    AvId,
    Challenge,
    NTClientChallengeV2,
)

_AUTHENTICATE = b"NTLMSSP\x00\x03\x00\x00\x00"  # MS-NLMP 2.2.1.3 signature + MessageType 3
GSS_C_CHANNEL_BOUND_FLAG = 2048  # MIT krb5 gssapi.h (1.19+): the initiator's binding matched


def _mechanism(ctx: Any, kind: type) -> Any | None:
    """Return the context of class `kind` inside `ctx` (itself, or one of SPNEGO's mechanisms)."""
    if isinstance(ctx, kind):
        return ctx
    contexts = getattr(ctx, "_context_list", {})  # SPNEGO: pyspnego's per-mechanism contexts
    return next((c for c, _ in contexts.values() if isinstance(c, kind)), None)


def ntlm_context(ctx: Any) -> Any | None:
    """Return the NTLM context inside `ctx` (NTLM itself, or SPNEGO's NTLM mechanism), or None."""
    return _mechanism(ctx, NTLMProxy)


def replace_challenge(ntlm: Any, challenge: bytes) -> None:
    """Make the acceptor verify the AUTHENTICATE MIC over `challenge`, the bytes actually sent."""
    ntlm._temp_challenge = Challenge.unpack(challenge)


def ntlm_channel_binding(token: bytes) -> bytes | None:
    """Return the MsvAvChannelBindings hash an NTLM AUTHENTICATE (raw or in SPNEGO) carries, or None."""
    at = token.find(_AUTHENTICATE)
    if at < 0:
        return None
    response = Authenticate.unpack(token[at:]).nt_challenge_response
    if not response or len(response) <= 24:  # NTLMv1: no AV pairs at all
        return None
    value = NTClientChallengeV2.unpack(response[16:]).av_pairs.get(AvId.channel_bindings)
    return bytes(value) if isinstance(value, bytes) else None


def kerberos_channel_bound(ctx: Any) -> bool:
    """Return whether an established Kerberos context's initiator sent the acceptor's binding."""
    proxy = _mechanism(ctx, GSSAPIProxy)
    inner = getattr(proxy, "_context", None)  # the python-gssapi SecurityContext
    if inner is None:
        return False
    return bool(int(inner.actual_flags) & GSS_C_CHANNEL_BOUND_FLAG)
