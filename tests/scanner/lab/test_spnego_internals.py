"""The lab's only reach into pyspnego's private NTLM acceptor still works with the installed pyspnego."""

from __future__ import annotations

from pathlib import Path

import pytest
import spnego

from scanner.lab.spnego_internals import ntlm_context, replace_challenge


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
