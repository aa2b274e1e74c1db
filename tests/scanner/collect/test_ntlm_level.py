"""NTLMv1 and LM responses are never sent, whatever LM_COMPAT_LEVEL the scanner's environment holds.

Reproduced on main: LM_COMPAT_LEVEL=0, 1 or 2 made pyspnego answer with a 24-byte NT response
and a non-zero LM response. A rogue host in the inventory picks the server challenge, so those
make the scan account's NT hash crackable. Here a rogue WinRM listener (a raw loopback server)
sends its own CHALLENGE, fixed challenge and all, records every AUTHENTICATE message the real CLI
sends, and the test decodes each one (MS-NLMP 2.2.1.3).
"""

from __future__ import annotations

import base64
import struct
import time
from pathlib import Path

import pytest
import spnego

from scanner.collect.wsman.auth import check_ntlmv2
from scanner.collect.wsman.errors import CollectError
from tests.peers.rawserver import RawConn, RawServer
from tests.support.cliproc import LAB_CREDS, run_cli_bytes

SERVER_CHALLENGE = b"\x11\x22\x33\x44\x55\x66\x77\x88"  # the rogue host's choice: precomputed tables
FLAGS = (
    0x00000001  # UNICODE
    | 0x00000004  # REQUEST_TARGET
    | 0x00000010  # SIGN
    | 0x00000020  # SEAL
    | 0x00000200  # NTLM
    | 0x00008000  # ALWAYS_SIGN
    | 0x00010000  # TARGET_TYPE_DOMAIN
    | 0x00080000  # EXTENDED_SESSIONSECURITY
    | 0x00800000  # TARGET_INFO
    | 0x02000000  # VERSION
    | 0x20000000  # 128
    | 0x40000000  # KEY_EXCH
    | 0x80000000  # 56
)


def _av(av_id: int, value: bytes) -> bytes:
    return struct.pack("<HH", av_id, len(value)) + value


def challenge(*, timestamp: bool) -> bytes:
    """Return a CHALLENGE_MESSAGE (MS-NLMP 2.2.1.2) as a rogue server would send it."""
    name = "LAB".encode("utf-16-le")
    info = _av(2, name) + _av(1, "ROGUE".encode("utf-16-le"))
    info += _av(4, "lab.test".encode("utf-16-le")) + _av(3, "rogue.lab.test".encode("utf-16-le"))
    if timestamp:  # Windows Vista and later send MsvAvTimestamp; XP and 2003 do not
        info += _av(7, struct.pack("<Q", (int(time.time()) + 11644473600) * 10_000_000))
    info += _av(0, b"")
    header = 56
    return (
        b"NTLMSSP\0"
        + struct.pack("<I", 2)
        + struct.pack("<HHI", len(name), len(name), header)
        + struct.pack("<I", FLAGS)
        + SERVER_CHALLENGE
        + b"\0" * 8
        + struct.pack("<HHI", len(info), len(info), header + len(name))
        + bytes([10, 0]) + struct.pack("<H", 20348) + b"\0\0\0\x0f"
        + name
        + info
    )  # fmt: skip


def rogue(auths: list[bytes], *, timestamp: bool) -> RawServer:
    """A WinRM listener that answers NEGOTIATE with its CHALLENGE and records each AUTHENTICATE."""

    def handler(conn: RawConn) -> None:
        while (request := conn.read_request()) is not None:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            token = base64.b64decode(value) if scheme.lower() == "negotiate" and value else b""
            if token[8:12] == struct.pack("<I", 3):
                auths.append(token)
                conn.send(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            reply = base64.b64encode(challenge(timestamp=timestamp))
            conn.send(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Negotiate " + reply + b"\r\n")
            conn.send(b"Content-Length: 0\r\n\r\n")

    return RawServer(handler)


def responses(token: bytes) -> tuple[bytes, bytes]:
    """Return (LmChallengeResponse, NtChallengeResponse) of an AUTHENTICATE_MESSAGE."""
    assert token[:8] == b"NTLMSSP\0" and struct.unpack_from("<I", token, 8)[0] == 3

    def field(offset: int) -> bytes:
        length, _, start = struct.unpack_from("<HHI", token, offset)
        return token[start : start + length]

    return field(12), field(20)


@pytest.mark.parametrize("timestamp", [True, False], ids=["vista-style-challenge", "xp-style-challenge"])
@pytest.mark.parametrize("level", ["0", "1", "2"])
def test_the_scanner_sends_ntlmv2_only(tmp_path: Path, level: str, timestamp: bool) -> None:
    auths: list[bytes] = []
    with rogue(auths, timestamp=timestamp) as first, rogue(auths, timestamp=timestamp) as second:
        inventory = tmp_path / "hosts.yaml"
        inventory.write_text(
            "hosts:\n"
            f"  - {{name: rogue-1, address: 127.0.0.1, port: {first.port}}}\n"
            f"  - {{name: rogue-2, address: 127.0.0.1, port: {second.port}}}\n",
            encoding="utf-8",
        )
        done = run_cli_bytes(
            "scan", "-i", str(inventory), "--no-history", "-f", "json", "--host-timeout", "5", "--connect-timeout", "2",
            env={**LAB_CREDS, "LM_COMPAT_LEVEL": level},
        )  # fmt: skip
    assert done.returncode == 3, done.stderr  # the rogue host refuses the logon: unread, incomplete
    assert len(auths) == 2, done.stderr  # one AUTHENTICATE per host, each decoded below
    for token in auths:
        lm, nt = responses(token)
        assert len(nt) > 24, "an NTLMv1 response (24 bytes) was sent"
        if timestamp:
            assert lm.strip(b"\0") == b"", "an LM response was sent"
        else:
            # Without a timestamp MS-NLMP 3.3.2 has the client send LMv2, an HMAC keyed like
            # NTLMv2 and ending with the client challenge that NTLMv2's blob carries: never LM.
            assert len(lm) == 24 and lm[16:] == nt[32:40]
    assert f"LM_COMPAT_LEVEL={level} in the environment asks for NTLMv1/LM responses".encode() in done.stderr


@pytest.mark.parametrize("level", ["0", "1", "2"])
def test_an_ntlmv1_or_lm_response_is_never_let_out(monkeypatch: pytest.MonkeyPatch, level: str) -> None:
    # pyspnego itself, told a weak level, builds the message the guard must stop.
    monkeypatch.setenv("LM_COMPAT_LEVEL", level)
    context = spnego.client("LAB\\auditor", "Lab-Passw0rd!", hostname="rogue", service="http", protocol="ntlm")
    context.step(None)
    weak = context.step(challenge(timestamp=True))
    assert weak is not None and len(responses(weak)[1]) == 24
    with pytest.raises(CollectError, match="refused to send an NTLMv1 or LM response") as info:
        check_ntlmv2(weak)
    assert (info.value.stage.value, info.value.reason) == ("auth", "auth_failed")
    monkeypatch.setenv("LM_COMPAT_LEVEL", "3")
    context = spnego.client("LAB\\auditor", "Lab-Passw0rd!", hostname="rogue", service="http", protocol="ntlm")
    context.step(None)
    strong = context.step(challenge(timestamp=False))
    assert strong is not None
    check_ntlmv2(strong)  # NTLMv2 with LMv2 passes
