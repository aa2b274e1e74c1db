"""Write files so that a reader sees the old content or the new one, never half of either."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from scanner.core.private import create_exclusive


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `path` (fsync, then rename) when the block ends normally.

    The file is 0600. If the block raises, the temp file is deleted and `path` is left as it was.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    # O_CREAT | O_EXCL | O_NOFOLLOW under a random name, exactly 0600 whatever the umask: a link
    # planted in the folder is never written through (docs/security.md#shared-state-directory).
    # The rename below replaces a link at the final name; it never follows it.
    fd, tmp = create_exclusive(folder, target.name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # fsync the folder so the rename itself survives a crash (POSIX rename(2) durability)
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def atomic_text(path: str | Path) -> Iterator[TextIO]:
    """Yield a UTF-8 text stream (no newline translation) that replaces `path` like `atomic_file`.

    A renderer writes a large report into it as it goes, so the text is never held whole.
    """
    with atomic_file(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        try:
            yield text
            text.flush()
        finally:
            text.detach()  # `raw` stays open: atomic_file fsyncs and closes it


def write_atomic(path: str | Path, data: bytes | Iterable[bytes]) -> None:
    """Write `data` (bytes, or chunks of it) to `path` via a temp file, fsync, then rename over it."""
    with atomic_file(path) as handle:
        if isinstance(data, bytes):
            handle.write(data)
        else:
            for chunk in data:  # a large report is written as it is rendered, never held whole
                handle.write(chunk)
