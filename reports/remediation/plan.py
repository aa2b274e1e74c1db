"""The remediation plan: per host, what the audit observed (before) and what a fix will write (after).

Built from a JSON report by reports/remediation/planner.py and written by one module per format
(reports/remediation/formats.py). Frozen and strictly validated, so the plan a future `--apply`
reads back is held to the same invariants as the one written: only the two documented keys, only
the documented value name, a set before a delete before a restart (docs/remediation.md).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import Field, field_validator, model_validator

from reports.model import Tool
from scanner.core.models import IPSEC_KEY, POLICYAGENT_KEY, Frozen
from scanner.core.semantics import OsFamily
from scanner.inputs.inventory.validate import host_problem

PLAN_SCHEMA_VERSION: Final = "1.0"
HIVE: Final = "HKEY_LOCAL_MACHINE"
# Spelled out because a Literal takes literals; tests/reports/remediation checks it equals VALUE_NAME.
ValueName = Literal["AssumeUDPEncapsulationContextOnSendRule"]
SERVICE: Final = "PolicyAgent"  # the IPsec Policy Agent on every version (docs/domain.md#restart)


class RegistryKey(StrEnum):
    """The only keys a plan touches (docs/domain.md#registry-locations), under HKEY_LOCAL_MACHINE."""

    IPSEC = IPSEC_KEY  # XP SP2 and later XP, Server 2003
    POLICYAGENT = POLICYAGENT_KEY  # Vista, Server 2008 and later

    @property
    def short(self) -> str:
        """Return the last path element: IPsec or PolicyAgent."""
        return self.value.rsplit("\\", 1)[1]

    @classmethod
    def of(cls, path: str) -> RegistryKey | None:
        """Return the member whose path equals `path` case-insensitively, None for any other path."""
        return next((key for key in cls if key.value.lower() == path.lower()), None)


def _host(value: str) -> str:
    problem = host_problem(value)
    if problem is not None:
        raise ValueError(f"{value!a} {problem}")
    return value


class Observed(Frozen):
    """The value as the audit read it: stored name, type and data (host-supplied, untrusted text)."""

    name: str
    type: str  # REG_DWORD, REG_SZ, ... or REG_TYPE_<n>
    data: int | str | list[str] | None  # as in the report (docs/domain.md#stdregprov)


class Dword(Frozen):
    """The value a set writes: a REG_DWORD Windows documents (docs/domain.md#modes)."""

    type: Literal["REG_DWORD"] = "REG_DWORD"
    data: Annotated[int, Field(ge=0, le=2)]


class SetValue(Frozen):
    """Write the value at the key that applies to the host's OS."""

    action: Literal["set_value"] = "set_value"
    hive: Literal["HKEY_LOCAL_MACHINE"] = HIVE
    key: RegistryKey
    name: ValueName = "AssumeUDPEncapsulationContextOnSendRule"
    key_present: bool  # whether the audit found the key; a set creates it when absent
    before: Observed | None  # None: no value at the key
    after: Dword


class DeleteValue(Frozen):
    """Delete the value from the key the host's OS ignores (a stray, docs/domain.md#stray-values)."""

    action: Literal["delete_value"] = "delete_value"
    hive: Literal["HKEY_LOCAL_MACHINE"] = HIVE
    key: RegistryKey
    # Registry value names match case-insensitively: this deletes the value whatever its stored spelling.
    name: ValueName = "AssumeUDPEncapsulationContextOnSendRule"
    before: Observed
    after: None = None  # absent


class RestartService(Frozen):
    """Restart the IPsec Policy Agent so the set takes effect: it reads the value at start (KB 885407)."""

    action: Literal["restart_service"] = "restart_service"
    service: Literal["PolicyAgent"] = SERVICE
    before: None = None  # the audit reads the registry, never the service's state
    after: Literal["restarted"] = "restarted"


Action = Annotated[SetValue | DeleteValue | RestartService, Field(discriminator="action")]
_ORDER = {"set_value": 0, "delete_value": 1, "restart_service": 2}


class HostPlan(Frozen):
    """The changes planned for one host, and the failing rules they fix."""

    name: Annotated[str, Field(max_length=253)]
    address: str
    port: Annotated[int, Field(ge=1, le=65535)]  # the WinRM port the audit used
    os_family: Literal[OsFamily.XP_2003, OsFamily.VISTA_PLUS]
    os_version: str
    key: RegistryKey  # the key that applies to this host's OS
    actions: Annotated[list[Action], Field(min_length=1)]
    rules: Annotated[list[str], Field(min_length=1)]  # ids of the failing rules these actions fix

    _name_ok = field_validator("name", "address")(_host)

    @model_validator(mode="after")
    def _coherent(self) -> HostPlan:
        expected = RegistryKey.POLICYAGENT if self.os_family is OsFamily.VISTA_PLUS else RegistryKey.IPSEC
        if self.key is not expected:
            raise ValueError(f"{self.os_family.value} reads {expected.value}, not {self.key.value}")
        kinds = [action.action for action in self.actions]
        if kinds != sorted(kinds, key=_ORDER.__getitem__) or kinds.count("set_value") > 1 or kinds.count(
            "restart_service"
        ) > 1:
            raise ValueError("actions are at most one set_value, then deletes, then at most one restart_service")
        for action in self.actions:
            if isinstance(action, SetValue) and action.key is not self.key:
                raise ValueError("a set_value writes the key that applies to the host's OS")
            if isinstance(action, DeleteValue) and action.key is self.key:
                raise ValueError("a delete_value removes a stray, from the key the host's OS ignores")
        if "restart_service" in kinds and "set_value" not in kinds:
            raise ValueError("a restart_service follows a set_value")
        if self.rules != sorted(set(self.rules)):
            raise ValueError("rules are sorted and unique")
        return self

    @property
    def change_set(self) -> str:
        """Return the id shared by every host with the same registry changes, e.g. set-PolicyAgent-0.delete-IPsec."""
        parts = []
        for action in self.actions:
            if isinstance(action, SetValue):
                parts.append(f"set-{action.key.short}-{action.after.data}")
            elif isinstance(action, DeleteValue):
                parts.append(f"delete-{action.key.short}")
        return ".".join(parts)

    @property
    def set_value(self) -> SetValue | None:
        """Return the planned set, if any."""
        return next((a for a in self.actions if isinstance(a, SetValue)), None)

    @property
    def deletes(self) -> list[DeleteValue]:
        """Return the planned deletes."""
        return [a for a in self.actions if isinstance(a, DeleteValue)]

    @property
    def restart(self) -> bool:
        """Return whether the Policy Agent is restarted."""
        return any(isinstance(a, RestartService) for a in self.actions)


class SkipReason(StrEnum):
    """Why nothing (or not everything) is planned for a host."""

    NOT_READ = "not_read"  # the host could not be read: nothing is planned for what was not seen
    WINDOWS_2000 = "windows_2000"  # no such setting (KB 885407): never touched
    UPGRADE_REQUIRED = "upgrade_required"  # XP before SP2 ignores the value: only an upgrade fixes it
    UNKNOWN_OS = "unknown_os"  # unparseable version: the applicable key cannot be known
    WAIVED = "waived"  # a waiver covers the failure; what it covers is left as it is
    NO_FIX = "no_fix"  # failing rules whose policy declares no fix
    CONFLICT = "conflict"  # fixes that want different data for the same value
    NO_CHANGE = "no_change"  # the fixes would change nothing the audit saw
    INVALID = "invalid"  # the report's entry is not consistent (name, OS, key or value): not trusted


class SkippedHost(Frozen):
    """A host (or some of its failing rules) left out of the plan, and why."""

    name: str  # as in the report: may be the very text that made the entry invalid
    address: str
    reason: SkipReason
    rules: list[str]  # the failing or waived rules concerned; empty for not_read and windows_2000
    detail: str


class PlanSource(Frozen):
    """The report and the policies the plan was made from."""

    report_schema_version: str
    scan_id: str
    started_at: str
    finished_at: str
    policies: list[str]  # the policies whose fixes were used, as given (built-in name or path)


class RemediationPlan(Frozen):
    """The plan for an estate: hosts to change, hosts left alone and why. Sorted by host name."""

    schema_version: Literal["1.0"] = PLAN_SCHEMA_VERSION
    tool: Tool
    source: PlanSource
    hosts: list[HostPlan]
    skipped: list[SkippedHost]
