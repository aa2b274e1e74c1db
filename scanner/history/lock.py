"""One scan per history database: an advisory `flock` on `<database>.lock`, never waited for.

`flock(2)` locks belong to the open file description, so the kernel drops the lock when the
process exits for any reason (even SIGKILL): a crashed run never leaves a stale lock behind. The
lock file keeps the holder's pid and start time, only to make the message useful.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from scanner.core.errors import NattError
from scanner.core.exitcodes import ExitCode
from scanner.core.private import open_private, private_dir


class LockedError(NattError):
    """Another natt-audit process holds the lock; the message names the lock file and holder."""

    exit_code = ExitCode.LOCKED


def lock_path_for(database: str | Path) -> Path:
    """Return the lock file that guards `database`."""
    return Path(f"{database}.lock")


class ScanLock:
    """Exclusive, non-blocking lock on a history database; a context manager."""

    def __init__(self, database: str | Path) -> None:
        self.path = lock_path_for(database)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock at once, or raise LockedError (held elsewhere), StateError (not private) or OSError."""
        private_dir(self.path.parent if str(self.path.parent) else ".")
        # No link followed, 0600, ours (scanner/core/private.py): a link planted at the lock's
        # name must not make the truncate below hit its target.
        fd = open_private(self.path, os.O_RDWR, create=True)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            with contextlib.suppress(OSError):
                holder = os.pread(fd, 200, 0).decode("ascii", "replace").strip()
            os.close(fd)
            who = f" ({holder})" if holder else ""
            raise LockedError(
                f"another natt-audit scan is using this history database{who}; lock file {self.path}. "
                "Not starting a second, overlapping scan."
            ) from None
        except OSError:
            os.close(fd)
            raise
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {started}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays: deleting it would race with a waiting opener)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ScanLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
