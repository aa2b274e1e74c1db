"""The one place the lab reaches into pyspnego's private NTLM acceptor, to send a host's own VERSION.

Windows puts its version (major, minor, build) in the NTLM CHALLENGE (MS-NLMP 2.2.2.10); pyspnego's
acceptor always writes its own package version there and offers no public way to change it. The lab
rewrites the CHALLENGE bytes and must then give the acceptor the same CHALLENGE, because the
AUTHENTICATE message's MIC is computed over it (MS-NLMP 3.1.5.1.2). That needs two private names:
the NTLM context class and the CHALLENGE message parser. They are imported here only, and
tests/scanner/lab/test_spnego_internals.py fails loudly when a pyspnego release moves them.
"""

from __future__ import annotations

from typing import Any

from spnego._ntlm import NTLMProxy  # private: the NTLM context class (no public type exists)
from spnego._ntlm_raw.messages import Challenge  # private: the CHALLENGE message parser


def ntlm_context(ctx: Any) -> Any | None:
    """Return the NTLM context inside `ctx` (NTLM itself, or SPNEGO's NTLM mechanism), or None."""
    if isinstance(ctx, NTLMProxy):
        return ctx
    contexts = getattr(ctx, "_context_list", {})  # SPNEGO: pyspnego's per-mechanism contexts
    return next((c for c, _ in contexts.values() if isinstance(c, NTLMProxy)), None)


def replace_challenge(ntlm: Any, challenge: bytes) -> None:
    """Make the acceptor verify the AUTHENTICATE MIC over `challenge`, the bytes actually sent."""
    ntlm._temp_challenge = Challenge.unpack(challenge)
