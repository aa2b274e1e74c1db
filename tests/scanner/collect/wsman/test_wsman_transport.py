"""WsmanTransport against a scripted NTLM peer: handshake cost, encryption checks, 503 retry."""

from __future__ import annotations

import base64
import socket
from pathlib import Path

import pytest
import spnego
from pydantic import SecretStr

from scanner.collect.wsman.auth import AuthMaterial
from scanner.collect.wsman.encryption import SPNEGO_ENCRYPTED, content_type, decrypt, encrypt
from scanner.collect.wsman.errors import CollectError
from scanner.collect.wsman.http import Deadline
from scanner.collect.wsman.transport import WsmanTransport
from scanner.core.models import CollectOptions, Credentials, Stage, Target
from tests.peers.rawserver import read_request, serve
from tests.scanner.collect.wsman.conftest import PASSWORD, USERNAME


def peer(script: list[str], received: list[bytes]) -> object:
    """An NTLM+encryption WinRM peer; `script` says how to answer each encrypted message."""

    def handler(conn: socket.socket) -> None:
        server = spnego.server(protocol="ntlm")
        while True:
            head, body = read_request(conn)
            if not head:
                return
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])
            }
            auth = headers.get(b"authorization", b"")
            if auth.startswith(b"Negotiate "):
                out = server.step(base64.b64decode(auth[10:]))
                if not server.complete:
                    conn.sendall(
                        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Negotiate "
                        + base64.b64encode(out)
                        + b"\r\nContent-Length: 0\r\n\r\n"
                    )
                    continue
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                continue
            received.append(decrypt(server, SPNEGO_ENCRYPTED, body))
            action = script.pop(0)
            if action == "503":
                conn.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n"
                )
                continue
            if action == "plain":
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nContent-Length: 4\r\n\r\n<a/>"
                )
                continue
            framed = encrypt(server, SPNEGO_ENCRYPTED, b"<reply/>")
            if action == "tamper":
                framed = framed[:-30] + bytes([framed[-30] ^ 1]) + framed[-29:]
            status = b"500 Internal Server Error" if action == "fault" else b"200 OK"
            conn.sendall(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: "
                + content_type(SPNEGO_ENCRYPTED).encode()
                + b"\r\nContent-Length: "
                + str(len(framed)).encode()
                + b"\r\n\r\n"
                + framed
            )

    return handler


def transport(port: int) -> WsmanTransport:
    target = Target(name="host", address="127.0.0.1", port=port)
    material = AuthMaterial(Credentials(username=USERNAME, password=SecretStr(PASSWORD)))
    return WsmanTransport(target, material, CollectOptions(), Deadline(5))


def test_two_request_handshake_then_encrypted_messages(ntlm_user_file: Path) -> None:
    received: list[bytes] = []
    with serve(peer(["ok", "ok"], received)) as port:
        t = transport(port)
        assert t.send_message("<first/>") == b"<reply/>"
        assert t.send_message(b"<second/>") == b"<reply/>"
    assert received == [b"<first/>", b"<second/>"]
    assert t.requests == 4  # Negotiate, Authenticate, then one request per message


def test_unencrypted_reply_is_bad_encryption(ntlm_user_file: Path) -> None:
    with serve(peer(["plain"], [])) as port, pytest.raises(CollectError) as info:
        transport(port).send_message("<m/>")
    assert (info.value.stage, info.value.reason) == (Stage.PARSE, "bad_encryption")


def test_tampered_reply_is_bad_encryption(ntlm_user_file: Path) -> None:
    with serve(peer(["tamper"], [])) as port, pytest.raises(CollectError) as info:
        transport(port).send_message("<m/>")
    assert info.value.reason == "bad_encryption"


def test_503_retried_once(ntlm_user_file: Path) -> None:
    received: list[bytes] = []
    with serve(peer(["503", "ok"], received)) as port:
        t = transport(port)
        assert t.send_message("<m/>") == b"<reply/>"
    assert received == [b"<m/>", b"<m/>"]
    assert t.requests == 4


def test_503_twice_is_http_503(ntlm_user_file: Path) -> None:
    with serve(peer(["503", "503"], [])) as port, pytest.raises(CollectError) as info:
        transport(port).send_message("<m/>")
    assert (info.value.stage, info.value.reason) == (Stage.COLLECT, "http_503")


def test_fault_body_is_decrypted_for_the_caller(ntlm_user_file: Path) -> None:
    from scanner.collect.wsman.errors import HttpStatusError

    with serve(peer(["fault"], [])) as port, pytest.raises(HttpStatusError) as info:
        transport(port).send_message("<m/>")
    assert (info.value.status, info.value.body) == (500, b"<reply/>")


def test_material_repr_hides_secrets() -> None:
    material = AuthMaterial(Credentials(username=USERNAME, password=SecretStr(PASSWORD)))
    nt_hash = material.nt_hash()
    assert nt_hash is not None
    assert len(nt_hash) == 32
    assert PASSWORD not in repr(material)
    assert nt_hash not in repr(material)
