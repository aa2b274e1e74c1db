"""docs/reliability.md#broken-replies, the authentication layer: a hostile 401 challenge or a tampered encrypted
reply is an `auth` / `bad_encryption` error, never an internal error."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import spnego
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.collect.collector import collect_host
from scanner.collect.wsman.auth import Authenticator, AuthMaterial
from scanner.collect.wsman.encryption import SPNEGO_ENCRYPTED, decrypt, encrypt
from scanner.collect.wsman.errors import CollectError
from scanner.core import ntlmhash
from scanner.core.models import AuthMethod, CollectOptions, Target
from tests.peers.rawserver import CREDENTIALS, RawConn, RawServer

CHALLENGES = {
    "not-base64": (b"Negotiate @@@not-base64!!", "auth_failed"),
    "one-byte": (b"Negotiate " + base64.b64encode(b"x"), "auth_failed"),  # was internal_error (struct.error)
    "30k-of-A": (b"Negotiate " + base64.b64encode(b"A" * 30000), "auth_failed"),  # was internal_error (KeyError)
    "spnego-garbage": (b"Negotiate " + base64.b64encode(b"\xa1\x82\xff\xff" + b"\x00" * 50), "auth_failed"),
    # A 401 to the NTLM NEGOTIATE checked no credential: the host does not take NTLM at all.
    "no-token": (b"Negotiate", "ntlm_refused"),
    "other-scheme-only": (b'Basic realm="x"', "ntlm_refused"),
}


@pytest.mark.parametrize("case", sorted(CHALLENGES))
def test_hostile_401_challenge(case: str) -> None:
    header, reason = CHALLENGES[case]

    def handler(conn: RawConn) -> None:
        while conn.read_request() is not None:
            conn.send(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: " + header + b"\r\nContent-Length: 0\r\n\r\n")

    with RawServer(handler) as server:
        obs = collect_host(
            Target(name="h", address="127.0.0.1", port=server.port), CREDENTIALS, CollectOptions(host_timeout=2)
        )
    assert obs.error is not None and (obs.error.stage.value, obs.error.reason) == ("auth", reason), obs.error


@settings(max_examples=200, deadline=None)
@given(
    challenge=st.binary(max_size=400) | st.builds(lambda b: b"NTLMSSP\x00\x02\x00\x00\x00" + b, st.binary(max_size=200))
)
def test_any_challenge_bytes_are_a_classified_error(challenge: bytes) -> None:
    auth = Authenticator(AuthMethod.NTLM, AuthMaterial(CREDENTIALS), hostname="h", https=False)
    auth.new_context(None)
    auth.step(None)
    reason = "auth_failed"
    try:
        auth.step(challenge)
    except CollectError as exc:  # the only exception allowed out of a hostile challenge
        reason = exc.reason
    assert reason == "auth_failed"


@pytest.fixture(scope="module", autouse=True)
def ntlm_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Give pyspnego's in-memory NTLM acceptor the lab account (it reads only $NTLM_USER_FILE)."""
    nt_hash = ntlmhash.nt_hash("Lab-Passw0rd!")
    assert nt_hash is not None
    path = tmp_path_factory.mktemp("ntlm") / "users.smbpasswd"
    lm, nt = ntlmhash.lm_hash("Lab-Passw0rd!").hex().upper(), nt_hash.hex().upper()
    path.write_text(f"LAB\\auditor:1000:{lm}:{nt}:[U]:LCT-00000000\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NTLM_USER_FILE", str(path))
        yield path
    assert "NTLM_USER_FILE" not in os.environ or os.environ["NTLM_USER_FILE"] != str(path)


def _sealed_pair() -> tuple[object, object]:
    """Return an established (client, server) NTLM pair, in memory."""
    client = spnego.client("LAB\\auditor", "Lab-Passw0rd!", hostname="h", service="http", protocol="ntlm")
    server = spnego.server(protocol="ntlm")
    token = client.step()
    while not client.complete:
        token = client.step(server.step(token))
    if not server.complete:
        server.step(token)
    return client, server


def test_an_untouched_reply_decrypts() -> None:
    client, server = _sealed_pair()
    body = encrypt(server, SPNEGO_ENCRYPTED, b"<s:Envelope/>")  # type: ignore[arg-type]
    assert decrypt(client, SPNEGO_ENCRYPTED, body) == b"<s:Envelope/>"  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_tampered_encrypted_reply_is_bad_encryption(data: st.DataObject) -> None:
    client, server = _sealed_pair()
    body = bytearray(encrypt(server, SPNEGO_ENCRYPTED, b"<s:Envelope>" + b"x" * 50 + b"</s:Envelope>"))  # type: ignore[arg-type]
    how = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    at = data.draw(st.integers(0, len(body) - 1))
    if how == "flip":
        body[at] ^= data.draw(st.integers(1, 255))
    elif how == "truncate":
        del body[at:]
    else:
        body[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    error: tuple[str, str] | None = None
    try:
        plain = decrypt(client, SPNEGO_ENCRYPTED, bytes(body))  # type: ignore[arg-type]
    except CollectError as exc:  # the only exception allowed out of a tampered reply
        error = (exc.stage.value, exc.reason)
    if error is not None:
        assert error == ("parse", "bad_encryption")
    else:
        # A change in the framing text only (e.g. inside the boundary's header lines) can leave
        # the sealed part intact; the plaintext must then be exactly what was sealed.
        assert plain == b"<s:Envelope>" + b"x" * 50 + b"</s:Envelope>"
