"""The lab's only reach into pyspnego's private classes still works with the installed pyspnego."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import spnego
from spnego.channel_bindings import GssChannelBindings

from scanner.lab.spnego_internals import ntlm_channel_binding, ntlm_context, replace_challenge


def test_the_ntlm_context_is_found_and_takes_a_rewritten_challenge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = tmp_path / "ntlm-users"
    users.write_text("LAB:user:Passw0rd!\n", encoding="utf-8")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    client = spnego.client("LAB\\user", "Passw0rd!", protocol="ntlm")
    server = spnego.server(protocol="negotiate")
    negotiate = client.step()
    assert negotiate is not None
    challenge_token = server.step(negotiate)
    assert challenge_token is not None
    ntlm = ntlm_context(server)
    assert ntlm is not None, "pyspnego moved its NTLM context class: update scanner/lab/spnego_internals.py"
    at = challenge_token.find(b"NTLMSSP\x00\x02\x00\x00\x00")
    assert at >= 0
    replace_challenge(ntlm, challenge_token[at:])
    assert ntlm._temp_challenge.pack() == challenge_token[at:]
    authenticate = client.step(challenge_token)
    assert authenticate is not None
    server.step(authenticate)  # the MIC is checked over the CHALLENGE the acceptor now holds
    assert server.complete


def test_the_ntlm_channel_binding_is_read_from_an_authenticate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    users = tmp_path / "ntlm-users"
    users.write_text("LAB:user:Passw0rd!\n", encoding="utf-8")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    bindings = GssChannelBindings(application_data=b"tls-server-end-point:" + bytes(range(32)))
    for sent, expected in ((bindings, hashlib.md5(bindings.pack()).digest()), (None, None)):
        client = spnego.client("LAB\\user", "Passw0rd!", protocol="ntlm", channel_bindings=sent)
        server = spnego.server(protocol="ntlm")
        negotiate = client.step()
        assert negotiate is not None
        authenticate = client.step(server.step(negotiate))
        assert authenticate is not None
        assert ntlm_channel_binding(authenticate) == expected, "pyspnego moved its NTLM message parsers"
    assert ntlm_channel_binding(b"not an NTLM message") is None
