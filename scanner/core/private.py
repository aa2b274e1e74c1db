"""Private state: folders only the scanning user can write to, files opened without following links.

The history database (with SQLite's `-wal` and `-shm`), its lock and checkpoint journal, and the
spool are the scanner's state: a map of the estate's weaknesses written by a process that holds
a privileged domain account. None of them may become a way in (docs/security.md#shared-state-directory):

- a state folder is created 0700 whatever the umask, and an existing one is refused when anyone
  but its owner can write to it (group or others), unless it is sticky and ours: in such a folder
  another user can plant a symbolic or hard link where natt-audit is about to write;
- a state file is opened with `O_NOFOLLOW` (a symbolic link is refused, never followed), created
  0600, and the opened descriptor is checked: a regular file, owned by the scanning user, with
  one link (a hard link to another file is refused) and not writable by group or others. A file
  of ours that others may only read (a database written by an older natt-audit was 0644) is
  tightened to 0600;
- temporary files are created with `O_CREAT | O_EXCL | O_NOFOLLOW` under a random name.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import stat
from pathlib import Path

from scanner.core.bounded import kind_of
from scanner.core.errors import NattError

FILE_MODE = 0o600
DIR_MODE = 0o700
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH
_OTHERS_ANY = stat.S_IRWXG | stat.S_IRWXO

log = logging.getLogger("natt_audit.state")


class StateError(NattError):
    """A state file or folder is not private to the scanning user; the message says what and how to fix it."""


def _mode(st: os.stat_result) -> str:
    return oct(stat.S_IMODE(st.st_mode))


def check_dir(path: str | Path) -> None:
    """Refuse a state folder that another user could plant files in; StateError says why."""
    folder = Path(path)
    try:
        # Follows a symbolic link to the folder on purpose (systemd's StateDirectory= may be one);
        # what matters is who can write in the folder the files end up in.
        st = os.stat(folder)
    except OSError as exc:
        raise StateError(f"state folder {folder}: {exc.strerror or type(exc).__name__}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise StateError(f"state folder {folder} is {kind_of(st.st_mode)}, not a folder")
    euid = os.geteuid()
    if st.st_uid not in (euid, 0):
        raise StateError(
            f"state folder {folder} belongs to uid {st.st_uid}, not to the scanning user (uid {euid}) "
            "or root; keep natt-audit's state in a folder of its own (docs/security.md#shared-state-directory)"
        )
    if st.st_mode & _OTHERS_WRITE and not (st.st_mode & stat.S_ISVTX and st.st_uid == euid):
        raise StateError(
            f"state folder {folder} is writable by other users (mode {_mode(st)}): anyone who can write "
            "there can plant a link where natt-audit writes its history, journal or spool; use a "
            f"private folder (chmod 700 {folder}) (docs/security.md#shared-state-directory)"
        )


def private_dir(path: str | Path) -> Path:
    """Create `path` and any missing parent 0700 (whatever the umask), then check it with check_dir."""
    folder = Path(path)
    missing: list[Path] = []
    probe = folder
    while not os.path.lexists(probe) and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for part in reversed(missing):
        try:
            os.mkdir(part, DIR_MODE)
        except FileExistsError:
            continue  # created meanwhile (another scan): checked below like any existing folder
        except OSError as exc:
            raise StateError(f"cannot create the state folder {part}: {exc.strerror or type(exc).__name__}") from None
        os.chmod(part, DIR_MODE)  # mkdir's mode is masked by the umask; 0700 whatever it is
    check_dir(folder)
    return folder


def check_fd(fd: int, path: str | Path) -> None:
    """Refuse an opened state file that is not a private regular file of ours; tighten read bits."""
    st = os.fstat(fd)
    euid = os.geteuid()
    if not stat.S_ISREG(st.st_mode):
        raise StateError(f"{path} is {kind_of(st.st_mode)}, not a regular file: refused")
    if st.st_uid != euid:
        raise StateError(
            f"{path} belongs to uid {st.st_uid}, not to the scanning user (uid {euid}): refused "
            "(run natt-audit as the account that owns its state; docs/security.md#shared-state-directory)"
        )
    if st.st_nlink != 1:
        raise StateError(f"{path} has {st.st_nlink} hard links; a state file has one: refused")
    if st.st_mode & _OTHERS_WRITE:
        raise StateError(
            f"{path} is writable by other users (mode {_mode(st)}): its content cannot be trusted; "
            f"check it, then chmod 600 {path}"
        )
    if st.st_mode & _OTHERS_ANY:
        os.fchmod(fd, FILE_MODE)
        log.warning("%s was readable by other users (mode %s); made it 0600", path, _mode(st))


def open_private(path: str | Path, flags: int, *, create: bool = False) -> int:
    """Open a state file without following a link (created 0600 when `create`) and check it; return the fd."""
    open_flags = flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    if create:
        open_flags |= os.O_CREAT
    try:
        fd = os.open(path, open_flags, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateError(f"{path} is a symbolic link: refused, never followed") from None
        raise
    try:
        check_fd(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_file(path: str | Path) -> bool:
    """Check the state file at `path` if there is one (as open_private would); return whether it exists."""
    try:
        fd = open_private(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    os.close(fd)
    return True


def create_exclusive(folder: str | Path, prefix: str) -> tuple[int, Path]:
    """Create a new temporary file 0600 in `folder` (O_EXCL, O_NOFOLLOW, random name); return (fd, path)."""
    for _ in range(100):
        path = Path(folder) / f".{prefix}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        except FileExistsError:
            continue
        os.fchmod(fd, FILE_MODE)  # the umask can only remove bits; this makes it exactly 0600
        return fd, path
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(folder))


def check_output_dir(path: str | Path, what: str) -> None:
    """Refuse a folder a file is about to be written into: missing, not writable, or a trap for links."""
    folder = Path(path)
    try:
        st = os.stat(folder)
    except OSError as exc:
        raise StateError(f"{what}: the folder {folder} {_missing(exc)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise StateError(f"{what}: {folder} is {kind_of(st.st_mode)}, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StateError(f"{what}: the folder {folder} is not writable by the scanning user")
    if st.st_mode & _OTHERS_WRITE and not st.st_mode & stat.S_ISVTX:
        # Without the sticky bit another user can rename or replace the file between natt-audit's
        # write and its rename, or plant a link at its name.
        raise StateError(
            f"{what}: the folder {folder} is writable by other users (mode {_mode(st)}) and not sticky: "
            "another user could replace the file; write it to a private folder"
        )


def _missing(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "does not exist"
    return f"cannot be used ({exc.strerror or type(exc).__name__})"
