"""Lockout safety for any engine's fan-out: prove the credentials on one host, stop after K rejections.

A scan sends the same account to every host, and every rejected logon counts against the account's
lockout threshold on the domain controller. `LogonPolicy` is the small state machine an engine
consults before starting each host and tells about each finished one (docs/authentication.md,
"Lockout safety"):

- **probing**: one host in flight until a host accepts the logon. A host that tells nothing about
  the credentials (refused, timed out, a fault before any credential was sent) is no evidence
  either way; after `serial_probes` such hosts in a row the width grows to the *safe width*,
  `max_auth_failures - rejections`, so that even if every host in flight rejected the logon the
  account would see at most `max_auth_failures` failures.
- **proven**: a host accepted the logon; the width is the scan's concurrency. A rejection from
  now on is a per-host authorisation problem (the account lacks rights there): it never trips
  the breaker.
- **tripped**: `max_auth_failures` distinct hosts rejected the logon and none accepted it. No
  further host is started; every host not started gets `auth/not_attempted` (`not_attempted`).

The policy holds no lock: the engine serialises `admit` and `record` (scanner/engine/pool.py). It
reads only `Observation.logon`, which survives JSON, so a distributed engine can keep one policy in
its coordinator and feed it the observations its workers send back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from scanner.core.models import DEFAULT_MAX_AUTH_FAILURES, HostError, Logon, Observation, Stage, Target

SERIAL_PROBES = 4  # inconclusive hosts probed one at a time before widening to the safe width


class Admission(Enum):
    """What the engine may do with its next host."""

    START = "start"  # start it now
    WAIT = "wait"  # wait until a host in flight finishes, then ask again
    STOP = "stop"  # start no more hosts: the breaker tripped


@dataclass
class LogonPolicy:
    """How many hosts may be in flight, given what the logons so far proved (module docstring)."""

    concurrency: int
    max_auth_failures: int = DEFAULT_MAX_AUTH_FAILURES
    serial_probes: int = SERIAL_PROBES
    proven: bool = False
    rejected: list[str] = field(default_factory=list)  # hosts that rejected the logon before any success
    rejected_after_proof: int = 0
    inconclusive: int = 0  # hosts finished with no verdict on the credentials, while probing

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_auth_failures < 1 or self.serial_probes < 0:
            raise ValueError("concurrency and max_auth_failures must be at least 1, serial_probes at least 0")

    @property
    def tripped(self) -> bool:
        """Return whether the breaker stopped the scan: K rejections, no accepted logon."""
        return not self.proven and len(self.rejected) >= self.max_auth_failures

    def width(self) -> int:
        """Return how many hosts may be in flight now."""
        if self.proven:
            return self.concurrency
        if self.tripped:
            return 0
        if self.inconclusive < self.serial_probes:
            return 1
        return min(self.concurrency, self.max_auth_failures - len(self.rejected))

    def admit(self, in_flight: int) -> Admission:
        """Return whether another host may start while `in_flight` hosts are running."""
        if self.tripped:
            return Admission.STOP
        return Admission.START if in_flight < self.width() else Admission.WAIT

    def record(self, observation: Observation) -> None:
        """Take one finished host's logon outcome into account."""
        if observation.logon is Logon.ACCEPTED:
            self.proven = True
        elif observation.logon is Logon.REJECTED:
            if self.proven:
                self.rejected_after_proof += 1
            elif observation.target.name not in self.rejected:
                self.rejected.append(observation.target.name)
        elif not self.proven:
            self.inconclusive += 1

    def stop_message(self) -> str:
        """Return why the scan stopped (the message every host not attempted carries)."""
        return (
            f"credentials rejected by {len(self.rejected)} hosts; stopped so the account is not locked out"
        )

    def not_attempted(self, target: Target) -> Observation:
        """Return the observation of a host the breaker kept the credentials away from."""
        error = HostError(stage=Stage.AUTH, reason="not_attempted", message=self.stop_message())
        return Observation(target=target, error=error)
