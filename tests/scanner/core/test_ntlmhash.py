"""The NTLM one-way functions, and the private pyspnego API they fall back on, against MS-NLMP vectors."""

from __future__ import annotations

import hashlib

import pytest

from scanner.core import ntlmhash

# MS-NLMP 4.2.2.1.1 (LMOWFv1) and 4.2.2.1.2 (NTOWFv1), for the password "Password".
LM = bytes.fromhex("e52cac67419a9a224a3b108f3fa6cb6d")
NT = bytes.fromhex("a4f49c406510bdcab6824ee7c30fd852")


def test_nt_and_lm_hash_match_the_spec_vectors() -> None:
    assert ntlmhash.nt_hash("Password") == NT
    assert ntlmhash.lm_hash("Password") == LM


def test_private_spnego_md4_still_exists_and_is_md4() -> None:
    # Fails loudly when pyspnego moves or changes spnego._ntlm_raw.md4: without it a machine whose
    # OpenSSL has no MD4 would derive the NT hash per host inside pyspnego (~2 ms CPU each).
    md4 = ntlmhash.spnego_md4()
    assert md4 is not None, "pyspnego's private spnego._ntlm_raw.md4.md4 is gone: update scanner/core/ntlmhash.py"
    assert md4("Password".encode("utf-16-le")) == NT
    assert md4(b"abc").hex() == "a448017aaf21d8525fc10ae87aa6729d"  # RFC 1320 A.5


def test_nt_hash_without_openssl_md4_uses_pyspnego(monkeypatch: pytest.MonkeyPatch) -> None:
    real_new = hashlib.new

    def no_md4(name: str, *args: object, **kwargs: object) -> object:
        if name.lower() == "md4":
            raise ValueError("unsupported hash type md4")
        return real_new(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hashlib, "new", no_md4)
    assert ntlmhash.nt_hash("Password") == NT
    monkeypatch.setattr(ntlmhash, "spnego_md4", lambda: None)
    assert ntlmhash.nt_hash("Password") is None  # the scanner then lets pyspnego use the password
