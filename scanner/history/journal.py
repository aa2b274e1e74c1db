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
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from scanner.core.errors import NattError
from scanner.core.models import Observation, Target
from scanner.inputs.credentials import CredentialFingerprint

JOURNAL_FORMAT = 1


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


def _write_header(path: Path, header: JournalHeader) -> None:
    """Write a journal holding only `header`, atomically.

    The header goes to a temp file renamed in: a crash leaves no journal, the previous one, or a
    journal with a whole header, never half of one.
    """
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(header.to_json().encode("utf-8") + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_journal(path: Path) -> JournalState | None:
    """Return the journal at `path`, None if there is none; JournalError if it is unusable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JournalError(f"cannot read the journal {path}: {exc.strerror or exc}") from None
    lines = data.split(b"\n")
    complete = lines[:-1]  # the part after the last newline is a torn write (or empty)
    if not complete:
        return None  # the header itself was never fully written: nothing to resume
    try:
        head = json.loads(complete[0])
        if head.get("type") != "start" or head.get("format") != JOURNAL_FORMAT:
            raise JournalError(f"{path}:1: not a natt-audit journal header")
        header = JournalHeader(
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
    observations: dict[str, Observation] = {}
    for number, line in enumerate(complete[1:], start=2):
        try:
            record = json.loads(line)
            observation = Observation.model_validate(record["observation"])
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            raise JournalError(f"{path}:{number}: unreadable journal line ({type(exc).__name__})") from None
        observations[observation.target.name] = observation
    return JournalState(header=header, observations=tuple(observations.values()))


class Journal:
    """An open journal being appended to; thread-safe, every line fsync'ed."""

    def __init__(self, path: Path, header: JournalHeader, *, fresh: bool) -> None:
        self.path = path
        self.header = header
        self._lock = threading.Lock()
        if fresh:
            _write_header(path, header)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._synced_at = 0.0
        if not fresh:
            self._drop_torn_tail()

    def _drop_torn_tail(self) -> None:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            os.ftruncate(self._fd, end)

    def append(self, observation: Observation) -> None:
        """Append one finished host and fsync it."""
        line = json.dumps({"type": "host", "observation": observation.model_dump(mode="json")}, sort_keys=True)
        payload = line.encode("utf-8") + b"\n"
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
        _write_header(self.path, self.header)

    def remove(self) -> None:
        """Close and delete the journal: the scan it belongs to is complete and recorded."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
