"""Read an input file with a hard bound: at most `cap` + 1 bytes, regular files only.

Every file natt-audit reads as input (policy, waivers, config, inventory, password and token
files, CA bundles, saved reports) comes through `read_bounded`, so none of them can make the
scanner read without end or wait without end (docs/security.md#inputs-and-the-machine):

- the path is stat'ed before it is opened, and anything but a regular file (a character or
  block device such as `/dev/zero`, a socket, a directory) is refused unopened: opening some
  devices has side effects of its own;
- it is opened with `O_NONBLOCK`, so a FIFO swapped in after the stat cannot block the open, and
  the opened descriptor is fstat'ed again;
- at most `cap` + 1 bytes are read, never "stat, then read everything": the size a stat reports
  can be false (`/proc`, a file still growing);
- FIFOs and pipes (`--password-file <(pass show audit)`) are read only where a caller allows
  them, within `cap` and a wall-clock timeout.
"""

from __future__ import annotations

import os
import select
import stat
import time
from pathlib import Path

from scanner.core.errors import NattError

PIPE_TIMEOUT = 10.0  # seconds a FIFO may take to deliver its content (a secret helper's output)
_CHUNK = 1024 * 1024


class InputFileError(NattError):
    """An input file cannot be read safely; `reason` says why, never quoting the file's content."""

    def __init__(self, path: str, reason: str, *, too_large: bool = False) -> None:
        self.path, self.reason, self.too_large = path, reason, too_large
        super().__init__(f"{path}: {reason}")


def kind_of(mode: int) -> str:
    """Return what a file of this mode is, in words (for messages)."""
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _allowed(mode: int, pipes: bool) -> bool:
    return stat.S_ISREG(mode) or (pipes and stat.S_ISFIFO(mode))


def _refuse(name: str, mode: int, pipes: bool) -> InputFileError:
    accepted = "a regular file or a pipe" if pipes else "a regular file"
    return InputFileError(name, f"is {kind_of(mode)}, not {accepted}; refused unread")


def _read_regular(fd: int, cap: int) -> bytes:
    parts: list[bytes] = []
    left = cap + 1
    while left > 0:
        chunk = os.read(fd, min(_CHUNK, left))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _read_pipe(fd: int, cap: int, timeout: float, name: str) -> bytes:
    # poll before every read: on Linux a FIFO that no writer has opened yet polls as "nothing",
    # not as end of file, so a writer that comes a moment later is still waited for.
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    parts: list[bytes] = []
    left = cap + 1
    while left > 0:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            raise InputFileError(name, f"the pipe delivered no end of file within {timeout:g} s; refused")
        try:
            chunk = os.read(fd, min(_CHUNK, left))
        except BlockingIOError:
            continue
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def read_bounded_stat(
    path: str | Path, cap: int, *, pipes: bool = False, timeout: float = PIPE_TIMEOUT
) -> tuple[bytes, os.stat_result]:
    """Return a regular file's content (at most `cap` bytes) and its fstat; InputFileError otherwise."""
    name = str(path)
    try:
        before = os.stat(path)
    except OSError as exc:
        raise InputFileError(name, exc.strerror or type(exc).__name__) from None
    if not _allowed(before.st_mode, pipes):
        raise _refuse(name, before.st_mode, pipes)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise InputFileError(name, exc.strerror or type(exc).__name__) from None
    try:
        info = os.fstat(fd)
        if not _allowed(info.st_mode, pipes):
            raise _refuse(name, info.st_mode, pipes)
        if stat.S_ISFIFO(info.st_mode):
            data = _read_pipe(fd, cap, timeout, name)
        else:
            data = _read_regular(fd, cap)
    except OSError as exc:
        raise InputFileError(name, exc.strerror or type(exc).__name__) from None
    finally:
        os.close(fd)
    if len(data) > cap:
        raise InputFileError(name, f"is larger than the {cap}-byte limit; refused", too_large=True)
    return data, info


def read_bounded(path: str | Path, cap: int, *, pipes: bool = False, timeout: float = PIPE_TIMEOUT) -> bytes:
    """Return the content of a regular file (or, with `pipes`, a pipe) of at most `cap` bytes."""
    return read_bounded_stat(path, cap, pipes=pipes, timeout=timeout)[0]
