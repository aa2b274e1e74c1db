"""Turn a report's failing results into a remediation plan, host by host. Pure: no I/O, no clock.

What is planned (docs/remediation.md#what-gets-planned): for a host that was read, on a Windows
version where a value can fix it, the union of the fixes of its failing rules, with the before the
audit observed. Never planned: a host that was not read (its state is unknown), Windows 2000 (no
such setting), XP before SP2 (the value is ignored: upgrade), an unparseable OS version (the key
that applies is unknown), and whatever a waived result's fix would change (the waiver accepts the
host as it is). The report is untrusted input: an entry whose OS, key or value contradicts itself
is skipped as invalid rather than believed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from reports.hosts import host_sort_key
from reports.model import HostReport, ScanInfo, Tool
from reports.remediation.plan import (
    Action,
    DeleteValue,
    Dword,
    HostPlan,
    Observed,
    PlanSource,
    RegistryKey,
    RemediationPlan,
    RestartService,
    SetValue,
    SkippedHost,
    SkipReason,
)
from rules.models import Policy
from rules.remediation import Fix
from scanner.core.models import VALUE_NAME, OsInfo
from scanner.core.results import RuleResult, Status, host_identity
from scanner.core.semantics import OsFamily, Setting, applicable_key, os_family
from scanner.inputs.inventory.validate import host_problem


class _Invalid(Exception):
    """The report's entry for a host contradicts itself; the message says how."""


def fixes_of(policies: Sequence[Policy]) -> dict[str, Fix]:
    """Return rule id -> fix for every rule of the set that declares one."""
    return {rule.id: rule.fix for policy in policies for rule in policy.rules if rule.fix is not None}


def _key(path: str | None, what: str) -> RegistryKey:
    key = RegistryKey.of(path or "")
    if key is None:
        raise _Invalid(f"{what} {path!a} is neither documented key")
    return key


def _observed_setting(setting: Setting) -> Observed | None:
    if not setting.present:
        if setting.raw_type is not None or setting.raw_value is not None:
            raise _Invalid("the setting says absent but carries a type or data")
        return None
    if setting.raw_type is None or setting.value_name is None:
        raise _Invalid("the setting says present but carries no type or name")
    if setting.value_name.lower() != VALUE_NAME.lower():
        raise _Invalid(f"the value is named {setting.value_name!a}, not {VALUE_NAME}")
    return Observed(name=setting.value_name, type=setting.raw_type, data=setting.raw_value)


def _checked(host: HostReport, os: OsInfo, setting: Setting) -> OsFamily:
    """Return the host's OS family once name, OS and setting agree with each other; raise _Invalid otherwise."""
    for what, text in (("name", host.name), ("address", host.address)):
        problem = host_problem(text)
        if problem is not None:
            raise _Invalid(f"the {what} {problem}")
    family = os_family(os)
    if setting.os_family is not family:
        raise _Invalid(f"OS version {os.version!a} is {family.value}, the setting says {setting.os_family.value}")
    expected = applicable_key(family)
    if (expected or "").lower() != (setting.applicable_key or "").lower():
        raise _Invalid(f"{family.value} reads {expected}, the setting says {setting.applicable_key!a}")
    return family


def _skip(host: HostReport, reason: SkipReason, rules: Iterable[str], detail: str) -> SkippedHost:
    return SkippedHost(name=host.name, address=host.address, reason=reason, rules=sorted(set(rules)), detail=detail)


def _ids(results: Iterable[RuleResult]) -> list[str]:
    return sorted({r.rule_id for r in results})


def plan_host(host: HostReport, fixes: Mapping[str, Fix]) -> tuple[HostPlan | None, list[SkippedHost]]:
    """Return the plan for one host (None when nothing is planned) and what was left out, with why."""
    os, setting = host.os, host.setting
    if host.error is not None or setting is None or os is None:
        why = f"{host.error.stage.value}/{host.error.reason}" if host.error is not None else "no setting in the report"
        return None, [_skip(host, SkipReason.NOT_READ, (), f"not read ({why}): nothing is planned for an unseen host")]
    failing = [r for r in host.results if r.status is Status.FAIL]
    fixable = [r for r in failing if r.rule_id in fixes]
    unfixable = [r for r in failing if r.rule_id not in fixes]
    waived = [r for r in host.results if r.status is Status.WAIVED and r.rule_id in fixes]
    try:
        family = _checked(host, os, setting)
    except _Invalid as exc:
        return None, [_skip(host, SkipReason.INVALID, _ids(failing), f"report entry not trusted: {exc}")]
    if family is OsFamily.WIN2000:
        detail = "Windows 2000 has no such setting (KB 885407): never touched"
        return None, [_skip(host, SkipReason.WINDOWS_2000, _ids(failing), detail)]
    if family is OsFamily.XP_PRE_SP2:
        if not failing:
            return None, []
        detail = "XP before SP2 ignores the value and behaves as mode 2 (KB 885407): upgrade to SP2 or later"
        return None, [_skip(host, SkipReason.UPGRADE_REQUIRED, _ids(failing), detail)]
    if family is OsFamily.UNKNOWN:
        if not failing:
            return None, []
        detail = f"OS version {os.version!a} does not parse: the key that applies cannot be known"
        return None, [_skip(host, SkipReason.UNKNOWN_OS, _ids(failing), detail)]
    try:
        return _plan_read_host(host, os, setting, fixes, fixable, unfixable, waived)
    except _Invalid as exc:
        return None, [_skip(host, SkipReason.INVALID, _ids(failing), f"report entry not trusted: {exc}")]


def _plan_read_host(
    host: HostReport,
    os: OsInfo,
    setting: Setting,
    fixes: Mapping[str, Fix],
    fixable: list[RuleResult],
    unfixable: list[RuleResult],
    waived: list[RuleResult],
) -> tuple[HostPlan | None, list[SkippedHost]]:
    """Plan a host on a version where a value fixes it (xp-2003 or vista-plus)."""
    here = _key(setting.applicable_key, "the applicable key")
    before = _observed_setting(setting)
    strays: list[tuple[RegistryKey, Observed]] = []
    for stray in setting.stray:
        key = _key(stray.key, "a stray's key")
        if key is here or stray.name.lower() != VALUE_NAME.lower():
            raise _Invalid(f"stray {stray.name!a} at {key.value} is not the value at the other key")
        strays.append((key, Observed(name=stray.name, type=stray.type, data=stray.data)))
    skipped: list[SkippedHost] = []
    if unfixable:
        skipped.append(_skip(host, SkipReason.NO_FIX, _ids(unfixable), "the policy declares no fix for these rules"))
    # What a waived result's fix would change stays as it is: the waiver accepted the host's state.
    held_value = any(fixes[r.rule_id].set_value is not None for r in waived)
    held_strays = any(fixes[r.rule_id].delete_strays for r in waived)
    if waived:
        skipped.append(_skip(host, SkipReason.WAIVED, _ids(waived), "waived: what the waiver accepts is left as it is"))
    setters = [r for r in fixable if fixes[r.rule_id].set_value is not None]
    wanted = {fix.set_value.data for r in setters if (fix := fixes[r.rule_id]).set_value is not None}
    if len(wanted) > 1:
        detail = f"the fixes want different data ({', '.join(map(str, sorted(wanted)))}): nothing is planned"
        return None, [*skipped, _skip(host, SkipReason.CONFLICT, _ids(setters), detail)]
    actions: list[Action] = []
    fixed: set[str] = set()
    blocked: set[str] = set()
    if setters and held_value:
        blocked.update(r.rule_id for r in setters)
    elif setters:
        data = wanted.pop()
        if before is None or before.type != "REG_DWORD" or before.data != data:
            actions.append(
                SetValue(key=here, key_present=setting.key_present, before=before, after=Dword(data=data))
            )
            fixed.update(r.rule_id for r in setters)
    deleters = [r for r in fixable if fixes[r.rule_id].delete_strays]
    if deleters and held_strays:
        blocked.update(r.rule_id for r in deleters)
    elif deleters and strays:
        actions.extend(DeleteValue(key=key, before=observed) for key, observed in strays)
        fixed.update(r.rule_id for r in deleters)
    restarters = [r for r in setters if fixes[r.rule_id].restart_service is not None]
    if restarters and any(isinstance(a, SetValue) for a in actions):
        actions.append(RestartService())
    if blocked:
        detail = "not planned: the change would undo what a waiver on this host accepts"
        skipped.append(_skip(host, SkipReason.WAIVED, blocked, detail))
    idle = {r.rule_id for r in fixable} - fixed - blocked
    if idle:
        skipped.append(_skip(host, SkipReason.NO_CHANGE, idle, "the fix would change nothing the audit saw"))
    if not actions:
        return None, skipped
    plan = HostPlan(
        name=host.name,
        address=host.address,
        port=host.port,
        os_family=setting.os_family,
        os_version=os.version,
        key=here,
        actions=actions,
        rules=sorted(fixed),
    )
    return plan, skipped


def build_plan(
    scan: ScanInfo,
    hosts: Iterable[HostReport],
    policies: Sequence[Policy],
    *,
    report_schema_version: str,
    policy_specs: Sequence[str],
    tool_version: str,
) -> RemediationPlan:
    """Return the plan for every host of a report (read one at a time), sorted by host name."""
    fixes = fixes_of(policies)
    planned: list[HostPlan] = []
    skipped: list[SkippedHost] = []
    seen: dict[str, int] = {}
    for host in hosts:
        identity = host_identity(host.name)
        seen[identity] = seen.get(identity, 0) + 1
        plan, left = plan_host(host, fixes)
        if plan is not None:
            planned.append(plan)
        skipped.extend(left)
    # Two entries for one host (the inventory refuses that; an edited report may not): plan neither.
    twice = {identity for identity, count in seen.items() if count > 1}
    for plan in [p for p in planned if host_identity(p.name) in twice]:
        planned.remove(plan)
        detail = "report entry not trusted: the report holds this host name more than once"
        skipped.append(
            SkippedHost(
                name=plan.name, address=plan.address, reason=SkipReason.INVALID, rules=plan.rules, detail=detail
            )
        )
    source = PlanSource(
        report_schema_version=report_schema_version,
        scan_id=scan.id,
        started_at=scan.started_at,
        finished_at=scan.finished_at,
        policies=list(policy_specs),
    )
    return RemediationPlan(
        tool=Tool(version=tool_version),
        source=source,
        hosts=sorted(planned, key=lambda h: host_sort_key(h.name)),
        skipped=sorted(skipped, key=lambda s: (*host_sort_key(s.name), s.reason.value)),
    )
