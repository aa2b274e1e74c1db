"""Checkpoint journal for `scan --resume`: finished hosts' observations, one JSON line each.

The journal lives next to the history database (`<database>.journal`). Line 1 is a header (scan
id, start time, inventory id, a digest of the inventory's targets, policies); every further line
is one finished host's `Observation`, appended, flushed and fsync'ed before the next, so after a
crash (or SIGKILL) at most the line being written is lost. A torn last line is ignored on read.
A scan that completes deletes its journal; an interrupted one keeps it for `--resume`, which
scans only the hosts not in it, keeps the scan id and start time, and evaluates every host
(journalled and new) the same way, so the final report equals an uninterrupted run's.

The header also holds the fingerprint of the credentials the scan used (never the secret:
scanner/inputs/credentials.py). A scan the lockout breaker stopped leaves a journal of its header
alone, marked with the breaker's outcome, so that `--resume` refuses to spend the same
credentials again (scanner/history/resume.py; docs/authentication.md#lockout-safety).

A resume records what the journal says as that night's facts, so the journal must not be
forgeable (docs/security.md#shared-state-directory). Each line ends with a tab and the hex
HMAC-SHA256 of the line under the history database's `journal_key` (made with the schema,
scanner/history/store.py), bound to the scan id; a journal that is not a private file of the
scanning user, or with a complete line whose code does not match, is refused as a whole: no
line of it is used, none is silently dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from scanner.core.errors import NattError
from scanner.core.models import Observation, Target
from scanner.core.private import StateError, create_exclusive, open_private
from scanner.inputs.credentials import CredentialFingerprint

JOURNAL_FORMAT = 2  # 2: every line authenticated (HMAC-SHA256); 1 had no authentication
_MAC_CONTEXT = b"natt-audit journal 2\0"


SYNC_INTERVAL = 0.2  # seconds between fdatasync calls of the checkpoint journal (group commit)


class JournalError(NattError):
    """The journal cannot be used to resume; the message says why."""


def journal_path_for(database: str | Path) -> Path:
    """Return the journal file that belongs to `database`."""
    return Path(f"{database}.journal")


def targets_digest(targets: Sequence[Target]) -> str:
    """Return a SHA-256 over the targets, so a resume refuses a changed inventory."""
    h = hashlib.sha256()
    for target in targets:
        h.update(target.model_dump_json().encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class BreakerStop:
    """How the lockout breaker stopped a scan (scanner/engine/logon.py)."""

    message: str  # "credentials rejected by 3 hosts; stopped so the account is not locked out"
    stopped_at: str  # RFC 3339, UTC

    def to_json(self) -> dict[str, str]:
        """Return the outcome as the journal header stores it."""
        return {"message": self.message, "stopped_at": self.stopped_at}


@dataclass(frozen=True)
class JournalHeader:
    """What identifies the scan a journal belongs to."""

    scan_id: str
    started_at: str
    inventory_id: str
    targets_digest: str
    policies: tuple[str, ...]
    credential: CredentialFingerprint | None = None  # absent in journals written before it existed
    breaker: BreakerStop | None = None

    def to_json(self) -> str:
        """Return the header as one JSON line (without the newline)."""
        return json.dumps(
            {
                "type": "start",
                "format": JOURNAL_FORMAT,
                "scan_id": self.scan_id,
                "started_at": self.started_at,
                "inventory_id": self.inventory_id,
                "targets_digest": self.targets_digest,
                "policies": list(self.policies),
                "credential": self.credential.to_json() if self.credential is not None else None,
                "breaker": self.breaker.to_json() if self.breaker is not None else None,
            },
            sort_keys=True,
        )


@dataclass(frozen=True)
class JournalState:
    """A journal read back: its header and the observations of the hosts it finished."""

    header: JournalHeader
    observations: tuple[Observation, ...]


def line_mac(key: bytes, scan_id: str, text: bytes) -> str:
    """Return the hex HMAC-SHA256 that authenticates one journal line of scan `scan_id`."""
    message = _MAC_CONTEXT + scan_id.encode("utf-8") + b"\0" + text
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _signed(key: bytes, scan_id: str, text: str) -> bytes:
    data = text.encode("utf-8")
    return data + b"\t" + line_mac(key, scan_id, data).encode("ascii") + b"\n"


def _write_header(path: Path, header: JournalHeader, key: bytes) -> None:
    """Write a journal holding only `header`, authenticated, atomically.

    The header goes to a new temp file (O_EXCL, no link followed, 0600) renamed in: a crash leaves
    no journal, the previous one, or a journal with a whole header, never half of one.
    """
    fd, tmp = create_exclusive(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(_signed(key, header.scan_id, header.to_json()))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _lines(handle: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    """Yield (number, line) for every complete line; the part after the last newline is a torn write."""
    for number, line in enumerate(handle, start=1):
        if line.endswith(b"\n"):
            yield number, line[:-1]


def _verified(path: Path, number: int, line: bytes, key: bytes, scan_id: str | None) -> bytes:
    """Return the JSON part of an authenticated line; JournalError if its code does not match."""
    text, tab, mac = line.rpartition(b"\t")
    if not tab:
        raise JournalError(f"{path}:{number}: the line carries no authentication code; natt-audit did not write it")
    if scan_id is None:  # the header: the scan id it claims is checked by the code itself
        try:
            scan_id = str(json.loads(text)["scan_id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise JournalError(f"{path}:{number}: unreadable journal header ({type(exc).__name__})") from None
    if not hmac.compare_digest(mac, line_mac(key, scan_id, text).encode("ascii")):
        raise JournalError(
            f"{path}:{number}: the line's authentication code does not match: the journal was changed "
            "outside natt-audit (or belongs to another history database); it cannot be trusted"
        )
    return text


def _open_journal(path: Path) -> int | None:
    try:
        return open_private(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except StateError as exc:
        raise JournalError(f"cannot read the journal: {exc}; a journal must be the scanning user's own file") from None
    except OSError as exc:
        raise JournalError(f"cannot read the journal {path}: {exc.strerror or exc}") from None


def read_journal(path: Path, key: bytes) -> JournalState | None:
    """Return the journal at `path`, None if there is none; JournalError if it is unusable or forged."""
    fd = _open_journal(path)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as handle:
        lines = _lines(iter(handle))
        first = next(lines, None)
        if first is None:
            return None  # the header itself was never fully written: nothing to resume
        number, line = first
        if b"\t" not in line and line.lstrip().startswith(b"{"):
            raise JournalError(f"{path}:1: a journal of an older natt-audit, without line authentication")
        header = _header(path, _verified(path, number, line, key, None))
        observations: dict[str, Observation] = {}
        for number, line in lines:
            text = _verified(path, number, line, key, header.scan_id)
            try:
                record = json.loads(text)
                observation = Observation.model_validate(record["observation"])
            except (ValueError, KeyError, TypeError, ValidationError) as exc:
                raise JournalError(f"{path}:{number}: unreadable journal line ({type(exc).__name__})") from None
            observations[observation.target.name] = observation
    return JournalState(header=header, observations=tuple(observations.values()))


def _header(path: Path, text: bytes) -> JournalHeader:
    try:
        head = json.loads(text)
        if head.get("type") != "start" or head.get("format") != JOURNAL_FORMAT:
            raise JournalError(f"{path}:1: not a natt-audit journal header")
        return JournalHeader(
            scan_id=str(head["scan_id"]),
            started_at=str(head["started_at"]),
            inventory_id=str(head["inventory_id"]),
            targets_digest=str(head["targets_digest"]),
            policies=tuple(str(p) for p in head["policies"]),
            credential=None if head.get("credential") is None else CredentialFingerprint.from_json(head["credential"]),
            breaker=None
            if head.get("breaker") is None
            else BreakerStop(str(head["breaker"]["message"]), str(head["breaker"]["stopped_at"])),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise JournalError(f"{path}:1: unreadable journal header ({type(exc).__name__})") from None


class Journal:
    """An open journal being appended to; thread-safe, every line authenticated and fsync'ed."""

    def __init__(self, path: Path, header: JournalHeader, key: bytes, *, fresh: bool) -> None:
        self.path = path
        self.header = header
        self._key = key
        self._lock = threading.Lock()
        if fresh:
            _write_header(path, header, key)
        self._fd = open_private(path, os.O_RDWR | os.O_APPEND)
        self._synced_at = 0.0
        if not fresh:
            self._drop_torn_tail()

    def _drop_torn_tail(self) -> None:
        # Only the end of the file is read: a torn line is one observation, far below 1 MiB.
        size = os.fstat(self._fd).st_size
        window = min(size, 1 << 20)
        cut = os.pread(self._fd, window, size - window).rfind(b"\n")
        if cut >= 0 and size - window + cut + 1 != size:
            os.ftruncate(self._fd, size - window + cut + 1)

    def append(self, observation: Observation) -> None:
        """Append one finished host, authenticated, and fsync it (group commit)."""
        line = json.dumps({"type": "host", "observation": observation.model_dump(mode="json")}, sort_keys=True)
        payload = _signed(self._key, self.header.scan_id, line)
        with self._lock:
            if self._fd < 0:
                return
            os.write(self._fd, payload)
            # Group commit: hosts finish one at a time under collect_all's lock, so a sync per host
            # would cap a scan at 1/sync-latency hosts per second (200/s on a 5 ms disk). A crash
            # loses at most SYNC_INTERVAL of entries, and those hosts are simply scanned again.
            now = time.monotonic()
            if now - self._synced_at >= SYNC_INTERVAL:
                os.fdatasync(self._fd)
                self._synced_at = now

    def close(self) -> None:
        """Close the file, keeping it (an interrupted scan's checkpoint)."""
        with self._lock:
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.fdatasync(self._fd)
                os.close(self._fd)
                self._fd = -1

    def mark_breaker(self, breaker: BreakerStop, credential: CredentialFingerprint | None) -> None:
        """Close and replace the journal by its header alone, marked with the breaker's outcome.

        The hosts journalled so far are dropped: nothing was read with credentials every host
        rejected, and the next run starts a new scan whatever it decides (scanner/history/resume.py).
        `credential` is the fingerprint of the credentials this run used (a resumed run may have
        changed them).
        """
        self.close()
        self.header = dataclasses.replace(self.header, credential=credential, breaker=breaker)
        _write_header(self.path, self.header, self._key)

    def remove(self) -> None:
        """Close and delete the journal: the scan it belongs to is complete and recorded."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
