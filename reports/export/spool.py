"""The on-disk spool: findings per scan (JSON Lines, fsync, atomic rename) and per-destination acks.

The spool is private state (docs/security.md#shared-state-directory): folders 0700, files 0600,
nothing written or read through a link, nothing used that another user owns.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from reports.export.destinations import Destination
from reports.findings import Finding, JsonValue, from_record, json_line, to_record
from scanner.core.atomic import write_atomic
from scanner.core.errors import NattError
from scanner.core.private import StateError, open_private, private_dir

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ACKED, DEAD = "A", "D"


class SpoolError(NattError):
    """The spool cannot be written or read (disk full, permissions, a damaged file)."""


def default_spool_dir() -> Path:
    """Return $NATT_AUDIT_SPOOL, else $XDG_STATE_HOME/natt-audit/spool, else ~/.local/state/..."""
    explicit = os.environ.get("NATT_AUDIT_SPOOL")
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "natt-audit" / "spool"


def _file_name(scan_id: str) -> str:
    if _SAFE_NAME.fullmatch(scan_id):
        return scan_id
    return "scan-" + hashlib.sha256(scan_id.encode("utf-8", "backslashreplace")).hexdigest()[:32]


def _folder(root: Path, path: Path) -> None:
    """Create (0700) or check a spool folder and each one above it up to the spool's root."""
    chain = [path, *(parent for parent in path.parents if root in parent.parents or parent == root)]
    try:
        for folder in reversed(chain):
            private_dir(folder)
    except StateError as exc:
        raise SpoolError(str(exc)) from None


def _read_private(path: Path) -> bytes | None:
    """Return a spool file's content (None if absent); a link or a file not ours is refused."""
    try:
        fd = open_private(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except StateError as exc:
        raise SpoolError(str(exc)) from None
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def _append_durably(root: Path, path: Path, text: str) -> None:
    """Append `text` and fsync, so an acknowledgement survives a crash right after it."""
    _folder(root, path.parent)
    try:
        # O_NOFOLLOW, 0600, ours: a link planted at an .acks name is refused, never appended through.
        fd = open_private(path, os.O_WRONLY | os.O_APPEND, create=True)
    except StateError as exc:
        raise SpoolError(str(exc)) from None
    try:
        data = text.encode("utf-8")
        while data:
            written = os.write(fd, data)
            data = data[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """A spool folder: scans/<scan>.jsonl, state/<dest>/{destination.json,<scan>.acks,dead-letter.jsonl}."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.scans = self.root / "scans"
        self.state = self.root / "state"

    def scan_path(self, scan_id: str) -> Path:
        """Return where the findings of one scan are spooled."""
        return self.scans / f"{_file_name(scan_id)}.jsonl"

    def write_scan(self, scan_id: str, findings: list[Finding]) -> Path:
        """Spool the findings of a scan atomically: a reader sees all of them or the previous file."""
        path = self.scan_path(scan_id)
        data = "".join(json_line(to_record(f)) + "\n" for f in findings).encode("utf-8")
        _folder(self.root, self.scans)
        try:
            if _read_private(path) == data:
                return path  # the same scan spooled again: nothing to do
            write_atomic(path, data)
        except OSError as exc:
            raise SpoolError(f"cannot write the spool file {path}: {exc.strerror or exc}") from None
        return path

    def scan_ids(self) -> list[str]:
        """Return the scans in the spool, oldest file first."""
        if not self.scans.is_dir():
            return []
        files = sorted(self.scans.glob("*.jsonl"), key=lambda p: (p.lstat().st_mtime_ns, p.name))
        ids: list[str] = []
        for path in files:
            findings = self._read(path)
            if findings:
                ids.append(findings[0].scan_id)
        return ids

    def _read(self, path: Path) -> list[Finding]:
        try:
            raw = _read_private(path)
            if raw is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
            lines = raw.decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise SpoolError(f"cannot read the spool file {path}: not UTF-8") from None
        except OSError as exc:
            raise SpoolError(f"cannot read the spool file {path}: {exc.strerror or exc}") from None
        findings: list[Finding] = []
        for number, line in enumerate(lines, 1):
            try:
                findings.append(from_record(json.loads(line)))
            except (ValueError, ValidationError) as exc:
                raise SpoolError(f"{path}:{number}: not a spooled finding ({type(exc).__name__})") from None
        return findings

    def load(self, scan_id: str) -> list[Finding]:
        """Return the spooled findings of a scan."""
        return self._read(self.scan_path(scan_id))

    def _dest_dir(self, destination: Destination) -> Path:
        return self.state / destination.key

    def register(self, destination: Destination) -> None:
        """Record a destination (its DEST text, never a secret) so `ship` knows where to resend."""
        path = self._dest_dir(destination) / "destination.json"
        record: dict[str, JsonValue] = {"dest": destination.text}
        data = (json_line(record) + "\n").encode("utf-8")
        _folder(self.root, path.parent)
        try:
            if _read_private(path) != data:
                write_atomic(path, data)
        except OSError as exc:
            raise SpoolError(f"cannot write the spool state {path}: {exc.strerror or exc}") from None

    def destinations(self) -> list[str]:
        """Return the DEST texts of every destination recorded in this spool, sorted."""
        texts: list[str] = []
        if not self.state.is_dir():
            return texts
        for path in sorted(self.state.glob("*/destination.json")):
            try:
                record = json.loads(_read_private(path) or b"null")
            except (OSError, ValueError) as exc:
                raise SpoolError(f"cannot read {path}: {type(exc).__name__}") from None
            if isinstance(record, dict) and isinstance(record.get("dest"), str):
                texts.append(record["dest"])
        return sorted(texts)

    def assign(self, destination: Destination, scan_id: str) -> None:
        """Record that a scan's findings are due at a destination: `ship` resends only those."""
        path = self._dest_dir(destination) / f"{_file_name(scan_id)}.due"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot write the spool state {path}: {exc.strerror or exc}") from None

    def due(self, destination: Destination, scan_ids: Iterable[str]) -> list[str]:
        """Return the scans whose findings were meant for a destination, in the order given."""
        folder = self._dest_dir(destination)
        if not any(folder.glob("*.due")):
            # A spool written before due markers: every scan was resent everywhere, as then.
            return list(scan_ids)
        return [s for s in scan_ids if (folder / f"{_file_name(s)}.due").is_file()]

    def _acks_path(self, destination: Destination, scan_id: str) -> Path:
        return self._dest_dir(destination) / f"{_file_name(scan_id)}.acks"

    def done(self, destination: Destination, scan_id: str) -> tuple[set[str], set[str]]:
        """Return (acknowledged, dead-lettered) event_uids of a scan at a destination."""
        path = self._acks_path(destination, scan_id)
        acked: set[str] = set()
        dead: set[str] = set()
        try:
            raw = _read_private(path)
        except OSError as exc:
            raise SpoolError(f"cannot read {path}: {exc.strerror or exc}") from None
        if raw is None:
            return acked, dead
        text = raw.decode("utf-8", "replace")
        for line in text.split("\n"):
            # a line cut by a crash is not a full "X uuid" line and is ignored: that event is resent
            kind, _, uid = line.partition(" ")
            if _UID.fullmatch(uid):
                (acked if kind == ACKED else dead if kind == DEAD else set()).add(uid)
        return acked, dead

    def mark(
        self, destination: Destination, scan_id: str, uids: Iterable[str], *, dead: bool = False
    ) -> None:
        """Durably record event_uids as acknowledged (or dead-lettered) by a destination."""
        text = "".join(f"{DEAD if dead else ACKED} {uid}\n" for uid in uids)
        if not text:
            return
        path = self._acks_path(destination, scan_id)
        try:
            _append_durably(self.root, path, text)
        except OSError as exc:
            raise SpoolError(f"cannot record acknowledgements in {path}: {exc.strerror or exc}") from None

    def pending(self, destination: Destination, scan_id: str) -> list[Finding]:
        """Return the findings of a scan not yet acknowledged nor dead-lettered by a destination."""
        acked, dead = self.done(destination, scan_id)
        return [f for f in self.load(scan_id) if f.event_uid not in acked and f.event_uid not in dead]

    def dead_letter_path(self, destination: Destination) -> Path:
        """Return the dead-letter file of a destination."""
        return self._dest_dir(destination) / "dead-letter.jsonl"

    def dead_letter(self, destination: Destination, records: list[dict[str, JsonValue]]) -> None:
        """Append rejected events, with the reason, to the destination's dead-letter file."""
        if not records:
            return
        path = self.dead_letter_path(destination)
        try:
            _append_durably(self.root, path, "".join(json_line(r) + "\n" for r in records))
        except OSError as exc:
            raise SpoolError(f"cannot write the dead-letter file {path}: {exc.strerror or exc}") from None
