"""The NTLM one-way functions (MS-NLMP 3.3.1 NTOWFv1, LMOWFv1): the one place that reaches into pyspnego.

pyspnego computes both internally but exposes them only in its private ``spnego._ntlm_raw`` package,
and MD4 (which NTOWFv1 is defined with) is missing from hashlib on OpenSSL 3 without the legacy
provider. The scanner derives the NT hash once per scan (scanner/collect/wsman/auth.py) and the lab
writes its acceptor's smbpasswd store from both hashes (scanner/lab/auth.py); both come through here,
so a change of that private API shows up in one module and in tests/scanner/test_ntlmhash.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable


def spnego_md4() -> Callable[[bytes], bytes] | None:
    """Return pyspnego's pure-Python MD4, or None when its private module is gone."""
    try:
        from spnego._ntlm_raw.md4 import md4  # private: no public MD4 exists in pyspnego
    except ImportError:
        return None
    function: Callable[[bytes], bytes] = md4
    return function


def nt_hash(password: str) -> bytes | None:
    """Return NTOWFv1(password), MD4 of its UTF-16LE form; None when no MD4 is available at all."""
    data = password.encode("utf-16-le", "surrogatepass")
    try:
        # MD4 is what NTLM is defined with (MS-NLMP 3.3.1 NTOWFv1); not our choice of hash.
        return hashlib.new("md4", data).digest()  # noqa: S324
    except ValueError:  # OpenSSL 3 without the legacy provider has no MD4
        pass
    md4 = spnego_md4()
    return None if md4 is None else md4(data)


def lm_hash(password: str) -> bytes:
    """Return LMOWFv1(password); raise ImportError when pyspnego's private module is gone."""
    from spnego._ntlm_raw.crypto import lmowfv1  # private: DES-based, no public equivalent

    digest: bytes = lmowfv1(password)
    return digest
