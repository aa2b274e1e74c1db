"""Decide how a scan with history starts: resume the journalled scan, or a new scan id.

The checkpoint journal (scanner/history/journal.py) belongs to one scan of one inventory with one
set of policies. `--resume` continues it only when all three still hold; anything else is refused
(exit 2, the journal kept) so a resumed report never mixes two inventories or two policy sets.
Without `--resume` a leftover journal is discarded with a warning and a new scan starts.

A journal the lockout breaker left (its header marked `breaker`) is no checkpoint: nothing was
read. `--resume` with the very credentials it fingerprints is refused (exit 2) before any host is
contacted, night after night, until the password is fixed; with other credentials a new scan
starts (docs/authentication.md#lockout-safety).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from scanner.core.models import Credentials, Observation, Target
from scanner.core.wording import count
from scanner.history.journal import JournalError, JournalHeader, JournalState, read_journal, targets_digest
from scanner.inputs.credentials import CredentialFingerprint, credential_fingerprint


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
    # The fingerprint of this run's credentials (for the breaker's mark), and whether the resumed
    # hosts were scanned with these very credentials (their logons then count toward the breaker).
    credential: CredentialFingerprint | None = None
    same_credentials: bool = False

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
    credentials: Credentials | None = None,
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
    fingerprint = credential_fingerprint(credentials) if credentials is not None else None
    try:
        state = read_journal(journal, key)
    except JournalError as exc:
        if resume:
            raise JournalError(f"{exc}; run without --resume to start a new scan") from None
        notes.append(Note(logging.WARNING, f"{exc}; starting a new scan"))
        state = None
    same = state is not None and _same_credentials(state, credentials)
    if state is not None and state.header.breaker is not None:
        notes.append(_after_breaker(state, credentials, same=same, resume=resume))
        header = JournalHeader(new_id(), now(), inventory_id, digest, policy_names, credential=fingerprint)
        return ScanStart(header=header, resumed=False, notes=tuple(notes), credential=fingerprint)
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
                f"{len(state.observations)} of {count(len(targets), 'host')} already done",
                {"scan_id": head.scan_id, "done": len(state.observations)},
            )
        )
        return ScanStart(
            header=head,
            resumed=True,
            done=state.observations,
            notes=tuple(notes),
            credential=fingerprint,
            same_credentials=same,
        )
    if state is not None:
        notes.append(
            Note(
                logging.WARNING,
                f"discarding the checkpoint of interrupted scan {state.header.scan_id} (use --resume to continue it)",
            )
        )
    elif resume:
        notes.append(Note(logging.INFO, "nothing to resume in this database; starting a new scan"))
    header = JournalHeader(new_id(), now(), inventory_id, digest, policy_names, credential=fingerprint)
    return ScanStart(header=header, resumed=False, notes=tuple(notes), credential=fingerprint)


def _same_credentials(state: JournalState, credentials: Credentials | None) -> bool:
    """Return whether the journal's scan used `credentials` (False when it cannot tell)."""
    recorded = state.header.credential
    return credentials is not None and recorded is not None and recorded.matches(credentials)


def _after_breaker(state: JournalState, credentials: Credentials | None, *, same: bool, resume: bool) -> Note:
    """Refuse to resume with the credentials the breaker stopped; else say a new scan starts."""
    head = state.header
    assert head.breaker is not None
    who = credentials.username if credentials is not None else "the scan account"
    stopped = f"scan {head.scan_id} was stopped at {head.breaker.stopped_at}: {head.breaker.message}"
    if same and resume:
        # Before any host is contacted: another night with the same password would cost the
        # account up to max_auth_failures more failed logons (docs/authentication.md#lockout-safety).
        raise JournalError(
            f"not resuming: {stopped}. These are the same credentials ({who}), so they are not tried "
            f"again: fix the password (--password-file, NATT_AUDIT_PASSWORD or the config's "
            f"credentials.password_file) and run again"
        )
    if same:
        return Note(
            logging.WARNING,
            f"{stopped}; scanning again with the same credentials ({who}) as asked (without --resume)",
        )
    return Note(
        logging.INFO,
        f"{stopped}; the credentials changed since, so a new scan starts",
        {"scan_id": head.scan_id},
    )
