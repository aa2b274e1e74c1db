"""Apply one host's planned changes over WinRM/WMI, shell-free, and say what became of each.

Per host, on one authenticated, encrypted connection (docs/remediation.md#applying):

1. re-read every value the plan changes (`collector.read_key`) and leave the host untouched if one
   no longer matches the report's before (`skipped`, `changed_since_report`): the report is the
   only thing the plan was reviewed against;
2. set the value with ``StdRegProv.SetDWORDValue`` (``CreateKey`` first when the key is gone),
   then delete each stray with ``DeleteValue``, reading each back to prove it;
3. restart the IPsec Policy Agent, which reads the value only when it starts (KB 885407):
   ``Win32_Service.StopService``, a bounded poll of ``State`` until ``Stopped``,
   ``StartService``, a bounded poll until ``Running``.

The first failure ends the host: the steps after it are `skipped` (`earlier_step_failed`), so a
value is never half-applied behind a failed one without the record saying so. Nothing here
raises for one host: every outcome is an `ActionResult`, and the `Observation` returned with
them carries the host's connection or logon error for the engine's accounting.
"""

from __future__ import annotations

import logging
import time
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from scanner.collect.collector import read_key
from scanner.collect.wsman import wmi
from scanner.collect.wsman.auth import AuthMaterial
from scanner.collect.wsman.errors import CollectError
from scanner.collect.wsman.http import Deadline
from scanner.collect.wsman.protocol import new_protocol
from scanner.collect.wsman.transport import WsmanTransport
from scanner.core.models import (
    IPSEC_KEY,
    POLICYAGENT_KEY,
    VALUE_NAME,
    CollectOptions,
    Frozen,
    HostError,
    KeyRead,
    Observation,
    RegistryValue,
    Stage,
    Target,
)

log = logging.getLogger("natt_audit.collect")

SERVICE = "PolicyAgent"
POLL_INTERVAL = 0.25  # seconds between two reads of Win32_Service.State
SERVICE_WAIT = 30.0  # longest wait for Stopped, then for Running (also bounded by the host deadline)


class ActionKind(StrEnum):
    """What one step does."""

    SET_VALUE = "set_value"
    DELETE_VALUE = "delete_value"
    RESTART_SERVICE = "restart_service"


class Outcome(StrEnum):
    """What became of one step."""

    DONE = "done"  # changed, and read back as planned
    UNCHANGED = "unchanged"  # nothing to do: the value was gone already, the service was not running
    FAILED = "failed"  # tried and refused or broken; `reason` says how
    SKIPPED = "skipped"  # not tried: the host changed since the report, was not reached, or a step before failed


class Change(Frozen):
    """One planned step, limited to what natt-audit may ever change (docs/remediation.md#what-gets-planned)."""

    action: ActionKind
    key: str | None = None  # HKLM sub-key of a set or delete
    before: RegistryValue | None = None  # what the report saw there; None: no value
    data: int | None = Field(default=None, ge=0, le=2)  # the REG_DWORD a set writes
    service: Literal["PolicyAgent"] | None = None

    @model_validator(mode="after")
    def _allowed(self) -> Change:
        if self.action is ActionKind.RESTART_SERVICE:
            if self.service is None or self.key is not None:
                raise ValueError("a restart names the service and no key")
            return self
        if self.key is None or self.key.lower() not in (IPSEC_KEY.lower(), POLICYAGENT_KEY.lower()):
            raise ValueError("a set or delete touches Services\\IPsec or Services\\PolicyAgent only")
        if (self.action is ActionKind.SET_VALUE) != (self.data is not None):
            raise ValueError("a set, and only a set, carries data")
        if self.action is ActionKind.DELETE_VALUE and self.before is None:
            raise ValueError("a delete removes a value the report saw")
        if self.before is not None and self.before.name.lower() != VALUE_NAME.lower():
            raise ValueError(f"only {VALUE_NAME} is ever changed")
        return self

    @property
    def what(self) -> str:
        """Return what the step changes, for people: the value's full path or the service."""
        if self.action is ActionKind.RESTART_SERVICE:
            return f"service {self.service}"
        return f"HKLM\\{self.key}\\{VALUE_NAME}"


ServiceState = str  # a Win32_Service State ("Running", "Stopped" ...)


class ActionResult(Frozen):
    """One step on one host: what was there, what is there now, and how it went."""

    action: ActionKind
    what: str  # HKLM\...\AssumeUDPEncapsulationContextOnSendRule, or service PolicyAgent
    before: RegistryValue | ServiceState | None  # re-read before the change (a value, a service state)
    after: RegistryValue | ServiceState | None  # read back after it (None: no value)
    result: Outcome
    reason: str | None = None  # why not done: changed_since_report, access_denied, service_start_failed, ...
    message: str = ""


class HostApply(Frozen):
    """Every step of one host, and the observation the engine accounts the host's logon with."""

    observation: Observation
    actions: tuple[ActionResult, ...]

    @property
    def complete(self) -> bool:
        """Return whether every step is done (or had nothing to do)."""
        return all(a.result in (Outcome.DONE, Outcome.UNCHANGED) for a in self.actions)


class _StepFailed(Exception):
    """One step failed; carries its result (the host stops there)."""

    def __init__(self, result: ActionResult) -> None:
        super().__init__(result.reason or "failed")
        self.result = result


def describe(value: RegistryValue | None) -> str:
    """Return a value for people: REG_DWORD 2, REG_SZ '2', or absent."""
    if value is None:
        return "absent"
    return f"{value.type} {value.data!r}" if value.type != "REG_DWORD" else f"REG_DWORD {value.data}"


def _same(seen: RegistryValue | None, expected: RegistryValue | None) -> bool:
    if seen is None or expected is None:
        return seen is None and expected is None
    # Names compare case-insensitively, as the registry matches them (docs/domain.md#stray-values).
    return seen.name.lower() == expected.name.lower() and seen.type == expected.type and seen.data == expected.data


def _skipped(change: Change, reason: str, message: str, before: RegistryValue | None = None) -> ActionResult:
    return ActionResult(
        action=change.action,
        what=change.what,
        before=before if change.action is not ActionKind.RESTART_SERVICE else None,
        after=None,
        result=Outcome.SKIPPED,
        reason=reason,
        message=message,
    )


def _registry_code(method: str, key: str, rv: int) -> tuple[str, str]:
    """Return (reason, message) for a StdRegProv ReturnValue other than 0."""
    if rv == wmi.RV_ACCESS_DENIED:
        return "access_denied", f"StdRegProv.{method} on HKLM\\{key}: access denied (ReturnValue 5)"
    if rv in wmi.RV_NOT_FOUND:
        return "not_found", f"StdRegProv.{method} on HKLM\\{key}: not found (ReturnValue {rv})"
    return "unexpected_return", f"StdRegProv.{method} on HKLM\\{key} returned {rv}"


class _HostApplier:
    """The steps of one host on one protocol session."""

    def __init__(self, protocol: wmi.Sender, deadline: Deadline) -> None:
        self.protocol = protocol
        self.deadline = deadline

    def fail(self, change: Change, before: RegistryValue | str | None, reason: str, message: str) -> _StepFailed:
        return _StepFailed(
            ActionResult(
                action=change.action,
                what=change.what,
                before=before,
                after=before,
                result=Outcome.FAILED,
                reason=reason,
                message=message,
            )
        )

    def set_value(self, change: Change, read: KeyRead) -> ActionResult:
        key, data = change.key or "", change.data or 0
        before = read.value
        if not read.key_present:
            rv = wmi.create_key(self.protocol, key)
            if rv != wmi.RV_OK:
                raise self.fail(change, before, *_registry_code("CreateKey", key, rv))
        # The value's stored spelling is kept by the write (docs/remediation.md#what-gets-planned).
        rv = wmi.set_dword(self.protocol, key, before.name if before is not None else VALUE_NAME, data)
        if rv != wmi.RV_OK:
            raise self.fail(change, before, *_registry_code("SetDWORDValue", key, rv))
        after = read_key(self.protocol, key).value
        if after is None or after.type != "REG_DWORD" or after.data != data:
            raise self.fail(
                change, before, "not_written", f"SetDWORDValue returned 0 but the value reads back as {describe(after)}"
            )
        return ActionResult(
            action=change.action,
            what=change.what,
            before=before,
            after=after,
            result=Outcome.DONE,
            message=f"{describe(before)} -> {describe(after)}",
        )

    def delete_value(self, change: Change, read: KeyRead) -> ActionResult:
        key = change.key or ""
        before = read.value
        name = before.name if before is not None else VALUE_NAME
        rv = wmi.delete_value(self.protocol, key, name)
        if rv in wmi.RV_NOT_FOUND:
            return ActionResult(
                action=change.action,
                what=change.what,
                before=before,
                after=None,
                result=Outcome.UNCHANGED,
                message="already absent",
            )
        if rv != wmi.RV_OK:
            raise self.fail(change, before, *_registry_code("DeleteValue", key, rv))
        after = read_key(self.protocol, key).value
        if after is not None:
            raise self.fail(
                change, before, "not_written", f"DeleteValue returned 0 but the value reads back as {describe(after)}"
            )
        return ActionResult(
            action=change.action,
            what=change.what,
            before=before,
            after=None,
            result=Outcome.DONE,
            message=f"{describe(before)} -> absent",
        )

    def wait_for(self, service: str, wanted: str) -> str:
        """Poll the service's State until it is `wanted`, SERVICE_WAIT or the host deadline; return the last."""
        give_up = time.monotonic() + SERVICE_WAIT
        state = wmi.service_state(self.protocol, service)
        while state != wanted:
            # Leave the deadline one poll's room, so the last read is made rather than cut off.
            if time.monotonic() >= give_up or self.deadline.remaining() <= POLL_INTERVAL + 1.0:
                return state
            time.sleep(POLL_INTERVAL)
            state = wmi.service_state(self.protocol, service)
        return state

    def restart(self, change: Change) -> ActionResult:
        service = change.service or SERVICE
        before = wmi.service_state(self.protocol, service)
        if before == "Stopped":
            # Starting a stopped Policy Agent would change more than the plan says; it reads the
            # value whenever it next starts (docs/remediation.md#the-restart).
            return ActionResult(
                action=change.action,
                what=change.what,
                before=before,
                after=before,
                result=Outcome.UNCHANGED,
                message=f"{service} is not running: it reads the new value when it next starts",
            )
        rv = wmi.stop_service(self.protocol, service)
        if rv not in (wmi.SVC_OK, wmi.SVC_NOT_ACTIVE):  # 6: stopped already (a resent request, say)
            raise self.fail(
                change,
                before,
                "service_stop_failed",
                f"StopService returned {wmi.service_return(rv)}: {service} still runs with the old value",
            )
        stopped = self.wait_for(service, "Stopped")
        if stopped != "Stopped":
            raise self.fail(
                change,
                stopped,
                "service_timeout",
                f"{service} is still '{stopped}' after StopService; StartService was not sent",
            )
        rv = wmi.start_service(self.protocol, service)
        # 10: running already, after we saw it Stopped: it started (again) after the write, so it
        # read the new value; a resent StartService answers this too.
        if rv not in (wmi.SVC_OK, wmi.SVC_ALREADY_RUNNING):
            raise self.fail(
                change,
                "Stopped",
                "service_start_failed",
                f"StartService returned {wmi.service_return(rv)}: {service} is STOPPED and must be started by hand",
            )
        running = self.wait_for(service, "Running")
        if running != "Running":
            raise self.fail(
                change,
                running,
                "service_timeout",
                f"{service} is still '{running}' after StartService: the new value is not shown to be in force",
            )
        return ActionResult(
            action=change.action,
            what=change.what,
            before=before,
            after=running,
            result=Outcome.DONE,
            message=f"stopped and started again ({before} -> Stopped -> Running)",
        )


def _changed(changes: tuple[Change, ...], reads: dict[str, KeyRead]) -> str | None:
    """Return how the host differs from the report's before, or None when every value still matches."""
    for change in changes:
        if change.key is None:
            continue
        seen = reads[change.key.lower()].value
        if not _same(seen, change.before):
            return f"{change.what}: the report saw {describe(change.before)}, the host now holds {describe(seen)}"
    return None


def _failure(change: Change, read: KeyRead | None, exc: Exception) -> ActionResult:
    """Return the result of a step that raised: its own failure, a classified error, or a bug."""
    if isinstance(exc, _StepFailed):
        return exc.result
    if isinstance(exc, CollectError):
        reason, message = f"{exc.stage.value}/{exc.reason}", exc.message
    else:
        # A bug in natt-audit: only the type is kept (the message could hold request data).
        reason, message = "collect/internal_error", f"internal error ({type(exc).__name__})"
    return ActionResult(
        action=change.action,
        what=change.what,
        before=read.value if read is not None else None,
        after=None,
        result=Outcome.FAILED,
        reason=reason,
        message=message,
    )


def _run(applier: _HostApplier, changes: tuple[Change, ...], reads: dict[str, KeyRead]) -> list[ActionResult]:
    results: list[ActionResult] = []
    for index, change in enumerate(changes):
        read = reads[change.key.lower()] if change.key is not None else None
        try:
            if change.action is ActionKind.SET_VALUE and read is not None:
                results.append(applier.set_value(change, read))
            elif change.action is ActionKind.DELETE_VALUE and read is not None:
                results.append(applier.delete_value(change, read))
            else:
                results.append(applier.restart(change))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - by contract a step's failure is its result, never the run's
            failed = _failure(change, read, exc)
            results.append(failed)
            for later in changes[index + 1 :]:
                detail = f"not tried: {failed.action.value} on {failed.what} failed ({failed.reason})"
                results.append(_skipped(later, "earlier_step_failed", detail))
            break
    return results


def apply_host(
    target: Target, material: AuthMaterial, options: CollectOptions, changes: tuple[Change, ...]
) -> HostApply:
    """Apply one host's steps in order; every outcome is a result, nothing raises for the host."""
    deadline = Deadline(options.host_timeout)
    transport: WsmanTransport | None = None
    reads: dict[str, KeyRead] = {}
    try:
        transport = WsmanTransport(target, material, options, deadline)
        try:
            transport.authenticate()
            protocol = new_protocol(target, options, transport)
            for change in changes:
                if change.key is not None and change.key.lower() not in reads:
                    reads[change.key.lower()] = read_key(protocol, change.key)
            observation = Observation(target=target, requests=transport.requests, keys=tuple(reads.values()))
            difference = _changed(changes, reads)
            if difference is not None:
                log.info("%s: left unchanged: %s", target.name, difference)
                skipped = tuple(
                    _skipped(c, "changed_since_report", difference, reads[c.key.lower()].value if c.key else None)
                    for c in changes
                )
                return HostApply(observation=observation, actions=skipped)
            results = _run(_HostApplier(protocol, deadline), changes, reads)
        finally:
            transport.close()
        observation = observation.model_copy(update={"requests": transport.requests})
        return HostApply(observation=observation, actions=tuple(results))
    except CollectError as exc:
        error = exc.to_host_error()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001
        # As in the collector: one host's bug must not stop the run, and only the type is kept
        # (the message could hold request data).
        message = f"internal error ({type(exc).__name__})"
        error = HostError(stage=Stage.COLLECT, reason="internal_error", message=message)
    requests = transport.requests if transport is not None else 0
    # Raised before any change (connect, logon, the re-read): the host was not touched.
    reason = f"{error.stage.value}/{error.reason}"
    observation = Observation(target=target, requests=requests, error=error)
    return HostApply(
        observation=observation,
        actions=tuple(_skipped(c, reason, f"not changed: {error.message}") for c in changes),
    )
