"""The one bounded reader of input files: regular files only (pipes where allowed), cap + 1 bytes."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from scanner.core.bounded import InputFileError, read_bounded, read_bounded_stat


def test_a_regular_file_within_the_cap_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_bounded(path, 100) == b"x" * 100
    data, info = read_bounded_stat(path, 100)
    assert data == b"x" * 100 and info.st_size == 100


def test_one_byte_over_the_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 101)
    with pytest.raises(InputFileError, match="larger than the 100-byte limit") as info:
        read_bounded(path, 100)
    assert info.value.too_large


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_devices_are_refused_unread(device: str) -> None:
    started = time.monotonic()
    with pytest.raises(InputFileError, match="character device") as info:
        read_bounded(device, 1024, pipes=True)
    assert not info.value.too_large
    assert time.monotonic() - started < 0.5


def test_directories_and_sockets_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="is a directory"):
        read_bounded(tmp_path, 10)
    path = tmp_path / "s"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        with pytest.raises(InputFileError, match="is a socket"):
            read_bounded(path, 10)
    finally:
        server.close()


def test_a_fifo_is_refused_at_once_unless_pipes_are_allowed(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(InputFileError, match="FIFO"):
        read_bounded(fifo, 10)  # no writer: a plain open() would block here forever
    assert time.monotonic() - started < 0.5


def _writer(fifo: Path, data: bytes, delay: float) -> threading.Thread:
    def write() -> None:
        time.sleep(delay)
        with contextlib.suppress(BrokenPipeError), open(fifo, "wb") as handle:
            handle.write(data)  # the reader may stop at its cap and close: EPIPE here

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_an_allowed_pipe_is_read_even_when_its_writer_comes_late(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    thread = _writer(fifo, b"secret\n", delay=0.3)
    assert read_bounded(fifo, 64, pipes=True, timeout=5) == b"secret\n"
    thread.join(5)


def test_an_allowed_pipe_is_bounded_in_size(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    thread = _writer(fifo, b"y" * 200_000, delay=0)
    with pytest.raises(InputFileError, match="larger than the 1000-byte limit"):
        read_bounded(fifo, 1000, pipes=True, timeout=5)
    thread.join(5)


def test_an_allowed_pipe_that_never_ends_times_out(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    holder = threading.Event()

    def hold_open() -> None:
        with open(fifo, "wb") as handle:
            handle.write(b"partial")
            handle.flush()
            holder.wait(10)

    thread = threading.Thread(target=hold_open, daemon=True)
    thread.start()
    started = time.monotonic()
    with pytest.raises(InputFileError, match=r"no end of file within 0\.5 s"):
        read_bounded(fifo, 1000, pipes=True, timeout=0.5)
    assert time.monotonic() - started < 2
    holder.set()
    thread.join(5)


def test_a_missing_file_names_the_reason(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="No such file"):
        read_bounded(tmp_path / "missing", 10)
