"""The HTTP client against scripted loopback peers: limits, deadlines and failure reasons."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from scanner.collect.wsman.errors import CollectError
from scanner.collect.wsman.http import Deadline, HttpConnection, resolve
from scanner.core.models import Stage
from tests.peers.rawserver import read_request, serve


def connection(
    port: int, deadline: float = 5.0, max_body: int = 4096, connect_timeout: float = 2.0
) -> HttpConnection:
    return HttpConnection(
        address="127.0.0.1",
        port=port,
        host_header=f"host:{port}",
        deadline=Deadline(deadline),
        connect_timeout=connect_timeout,
        max_body=max_body,
    )


def failure(conn: HttpConnection, body: bytes = b"<x/>") -> CollectError:
    with pytest.raises(CollectError) as info:
        conn.request([("Content-Type", "text/xml")], body)
    return info.value


def reply(raw: bytes, *, close: bool = False, requests: int = 1) -> object:
    def handler(conn: socket.socket) -> None:
        for _ in range(requests):
            head, _body = read_request(conn)
            if not head:
                return
            conn.sendall(raw)
        if close:
            conn.shutdown(socket.SHUT_RDWR)
        else:
            time.sleep(0.5)

    return handler


def test_keep_alive_content_length_and_chunked() -> None:
    raw = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello",
        b"HTTP/1.1 500 Internal\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nT: x\r\n\r\n",
    ]
    seen: list[bytes] = []

    def handler(conn: socket.socket) -> None:
        for answer in raw:
            head, body = read_request(conn)
            seen.append(head + b"|" + body)
            conn.sendall(answer)

    with serve(handler) as port:
        conn = connection(port)
        first = conn.request([("Content-Type", "text/xml")], b"<x/>")
        second = conn.request([], b"")
    assert (first.status, first.body, first.header("x-a")) == (200, b"hello", "1, 2")
    assert (second.status, second.reason, second.body) == (500, "Internal", b"abcde")
    assert conn.connections == 1  # both on one keep-alive connection
    assert seen[0].startswith(b"POST /wsman HTTP/1.1\r\nHost: host:")
    assert b"Content-Length: 4" in seen[0]
    assert seen[0].endswith(b"|<x/>")
    assert b"Proxy" not in seen[0]


def test_no_proxy_even_if_environment_sets_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.2:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.2:9")
    with serve(reply(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) as port:
        assert connection(port).request([], b"").status == 200


def test_read_to_close_body() -> None:
    with serve(reply(b"HTTP/1.0 200 OK\r\n\r\nuntil close", close=True)) as port:
        conn = connection(port)
        assert conn.request([], b"").body == b"until close"
        assert not conn.connected


def test_oversize_content_length_refused_before_reading() -> None:
    with serve(reply(b"HTTP/1.1 200 OK\r\nContent-Length: 200000000\r\n\r\n")) as port:
        err = failure(connection(port))
    assert (err.stage, err.reason) == (Stage.PARSE, "oversize")


def test_oversize_chunked_refused() -> None:
    chunk = b"1000\r\n" + b"a" * 4096 + b"\r\n"
    with serve(
        reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n")
    ) as port:
        err = failure(connection(port, max_body=8192))
    assert err.reason == "oversize"


def test_oversize_until_close_refused() -> None:
    with serve(reply(b"HTTP/1.0 200 OK\r\n\r\n" + b"a" * 200_000, close=True)) as port:
        err = failure(connection(port, max_body=8192))
    assert err.reason == "oversize"


def test_oversize_headers_refused() -> None:
    with serve(reply(b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * 70_000 + b"\r\n\r\n")) as port:
        err = failure(connection(port))
    assert err.reason == "oversize"


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    ],
)
def test_garbage_is_bad_http(raw: bytes) -> None:
    with serve(reply(raw)) as port:
        err = failure(connection(port))
    assert (err.stage, err.reason) == (Stage.PARSE, "bad_http")


def test_trickle_ends_at_the_deadline() -> None:
    def handler(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            conn.sendall(b"a")
            time.sleep(0.2)  # never silent long enough for a per-read timeout

    with serve(handler) as port:
        start = time.monotonic()
        err = failure(connection(port, deadline=1.0))
        assert time.monotonic() - start < 1.5
    assert (err.stage, err.reason) == (Stage.TIMEOUT, "deadline")


def test_headers_then_silence_ends_at_the_deadline() -> None:
    def handler(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        time.sleep(3)

    with serve(handler) as port:
        start = time.monotonic()
        err = failure(connection(port, deadline=0.5))
        assert time.monotonic() - start < 1.0
    assert err.reason == "deadline"


def test_reset_after_headers() -> None:
    def handler(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        time.sleep(0.1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    with serve(handler) as port:
        err = failure(connection(port))
    assert (err.stage, err.reason) == (Stage.CONNECT, "reset")


def test_close_mid_body() -> None:
    with serve(reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab", close=True)) as port:
        err = failure(connection(port))
    assert (err.stage, err.reason) == (Stage.CONNECT, "closed")


def test_refused() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    err = failure(connection(port))
    assert (err.stage, err.reason) == (Stage.CONNECT, "refused")


def test_syn_blackhole_is_connect_timeout() -> None:
    # A listener that never accepts, with its backlog full: Linux drops further SYNs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.1)
        start = time.monotonic()
        err = failure(connection(port, deadline=5, connect_timeout=0.3))
        assert (err.stage, err.reason) == (Stage.CONNECT, "connect_timeout")
        assert time.monotonic() - start < 1.0
        # With the deadline shorter than the connect timeout, the deadline wins.
        err = failure(connection(port, deadline=0.3, connect_timeout=5))
        assert (err.stage, err.reason) == (Stage.TIMEOUT, "deadline")
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_resolver_that_hangs_is_dns_within_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hang(*_args: object, **_kwargs: object) -> list[object]:
        release.wait(5)
        raise socket.gaierror(socket.EAI_AGAIN, "try again")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    start = time.monotonic()
    with pytest.raises(CollectError) as info:
        resolve("srv01.example", 5985, Deadline(0.3))
    release.set()
    assert (info.value.stage, info.value.reason) == (Stage.CONNECT, "dns")
    assert time.monotonic() - start < 0.8


def test_resolver_failure_is_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_args: object, **_kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(CollectError) as info:
        resolve("srv01.example", 5985, Deadline(2))
    assert info.value.reason == "dns"
    assert "srv01.example" in info.value.message


def test_ip_literals_skip_the_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: object, **_kwargs: object) -> list[object]:
        raise AssertionError("resolver called for an IP literal")

    monkeypatch.setattr(socket, "getaddrinfo", boom)
    assert resolve("127.0.0.1", 1, Deadline(1))[0][4] == ("127.0.0.1", 1)
    assert resolve("::1", 1, Deadline(1))[0][0] == socket.AF_INET6


def test_localhost_resolves_and_connects() -> None:
    with serve(reply(b"HTTP/1.1 204 No Content\r\n\r\n")) as port:
        conn = HttpConnection(
            address="localhost",
            port=port,
            host_header="localhost",
            deadline=Deadline(5),
            connect_timeout=2,
            max_body=100,
        )
        assert conn.request([], b"").status == 204
