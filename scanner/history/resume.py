"""Decide how a scan with history starts: resume the journalled scan, or a new scan id.

The checkpoint journal (scanner/history/journal.py) belongs to one scan of one inventory with one
set of policies. `--resume` continues it only when all three still hold; anything else is refused
(exit 2, the journal kept) so a resumed report never mixes two inventories or two policy sets.
Without `--resume` a leftover journal is discarded with a warning and a new scan starts.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from scanner.core.models import Observation, Target
from scanner.history.journal import JournalError, JournalHeader, read_journal, targets_digest


@dataclass(frozen=True)
class Note:
    """Something the user should be told about the decision, at a logging level."""

    level: int
    message: str
    fields: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class ScanStart:
    """How the scan starts: its journal header (id, start time, ...) and the hosts already done."""

    header: JournalHeader
    resumed: bool
    done: tuple[Observation, ...] = ()
    notes: tuple[Note, ...] = ()

    @property
    def scan_id(self) -> str:
        """Return the scan id: the interrupted scan's when resumed, else a new one."""
        return self.header.scan_id

    @property
    def started_at(self) -> str:
        """Return the start time: the interrupted scan's when resumed, else now."""
        return self.header.started_at


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_id() -> str:
    return str(uuid.uuid4())


def plan_start(
    journal: Path,
    *,
    key: bytes,
    inventory_id: str,
    targets: Sequence[Target],
    policies: Sequence[str],
    resume: bool,
    new_id: Callable[[], str] = _new_id,
    now: Callable[[], str] = _now,
) -> ScanStart:
    """Return how the scan starts; JournalError (exit 2) when --resume cannot be honoured.

    `key` is the history database's journal key: a journal whose lines it does not authenticate,
    or that is not the scanning user's private file, is never resumed from.
    """
    digest = targets_digest(targets)
    policy_names = tuple(policies)
    notes: list[Note] = []
    try:
        state = read_journal(journal, key)
    except JournalError as exc:
        if resume:
            raise JournalError(f"{exc}; run without --resume to start a new scan") from None
        notes.append(Note(logging.WARNING, f"{exc}; starting a new scan"))
        state = None
    if state is not None and resume:
        head = state.header
        if head.inventory_id != inventory_id or head.targets_digest != digest:
            raise JournalError(
                f"cannot resume scan {head.scan_id}: it was a scan of another inventory or the "
                f"inventory changed since ({head.inventory_id}); run without --resume to start over"
            )
        if head.policies != policy_names:
            raise JournalError(
                f"cannot resume scan {head.scan_id}: it ran with policies {list(head.policies)}, "
                f"not {list(policy_names)}; run without --resume to start over"
            )
        notes.append(
            Note(
                logging.INFO,
                f"resuming scan {head.scan_id} (started {head.started_at}): "
                f"{len(state.observations)} of {len(targets)} hosts already done",
                {"scan_id": head.scan_id, "done": len(state.observations)},
            )
        )
        return ScanStart(header=head, resumed=True, done=state.observations, notes=tuple(notes))
    if state is not None:
        notes.append(
            Note(
                logging.WARNING,
                f"discarding the checkpoint of interrupted scan {state.header.scan_id} (use --resume to continue it)",
            )
        )
    elif resume:
        notes.append(Note(logging.INFO, "nothing to resume in this database; starting a new scan"))
    header = JournalHeader(new_id(), now(), inventory_id, digest, policy_names)
    return ScanStart(header=header, resumed=False, notes=tuple(notes))
