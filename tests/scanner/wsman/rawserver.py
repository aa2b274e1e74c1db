"""Tiny loopback TCP servers scripted per test: each connection is handed to a function."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator


def read_request(conn: socket.socket) -> tuple[bytes, bytes]:
    """Read one HTTP request (head, body) from `conn`; Content-Length bodies only."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return b"", b""
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head, rest[:length]


@contextlib.contextmanager
def serve(handler: Callable[[socket.socket], None]) -> Iterator[int]:
    """Run `handler(conn)` for every connection to a fresh 127.0.0.1 port; yield the port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stopping = threading.Event()
    threads: list[threading.Thread] = []

    def run(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            handler(conn)

    def accept() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=run, args=(conn,), daemon=True)
            thread.start()
            threads.append(thread)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stopping.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        listener.close()
        acceptor.join(2)
