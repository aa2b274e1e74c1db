"""Build real reports (observations -> baseline policy -> ReportAssembly) for the nightly tests."""

from __future__ import annotations

import uuid

from reports.build import ReportAssembly
from reports.hosts import HostBuffer, Report
from reports.model import ScanInfo
from rules.evaluate import evaluate
from rules.loader import resolve_policies
from scanner.core.models import (
    IPSEC_KEY,
    POLICYAGENT_KEY,
    VALUE_NAME,
    HostError,
    KeyRead,
    Observation,
    OsInfo,
    RegistryValue,
    Stage,
    Target,
)
from scanner.core.semantics import assess

BASELINE = resolve_policies([])
WIN10 = OsInfo(version="10.0.19045", build=19045, service_pack=0, caption="Microsoft Windows 10 Pro")


def target(name: str, **tags: str) -> Target:
    """Return a loopback target."""
    return Target(name=name, address="127.0.0.1", port=5985, tags=tags)


def read(name: str, mode: int | None, *, caption: str | None = None, **tags: str) -> Observation:
    """Return a Windows 10 host whose PolicyAgent value is `mode` (None: absent)."""
    value = None if mode is None else RegistryValue(name=VALUE_NAME, type="REG_DWORD", data=mode)
    os_info = WIN10 if caption is None else WIN10.model_copy(update={"caption": caption})
    return Observation(
        target=target(name, **tags),
        requests=5,
        os=os_info,
        keys=(
            KeyRead(key=IPSEC_KEY, key_present=False),
            KeyRead(key=POLICYAGENT_KEY, key_present=True, value=value),
        ),
    )


def unreachable(name: str, reason: str = "refused", **tags: str) -> Observation:
    """Return a host that could not be read."""
    return Observation(
        target=target(name, **tags),
        error=HostError(stage=Stage.CONNECT, reason=reason, message="connection refused"),
    )


def report(
    observations: list[Observation], *, started: str = "2026-11-26T01:00:00Z", scan_id: str | None = None
) -> Report:
    """Evaluate the baseline policy on each host and assemble the report, as a scan does."""
    assembly = ReportAssembly(HostBuffer())
    for observation in observations:
        setting = assess(observation)
        assembly.add(observation, evaluate(observation, BASELINE, setting=setting), setting=setting)
    info = ScanInfo(
        id=scan_id or str(uuid.uuid4()),
        started_at=started,
        finished_at=started,
        policies=["baseline"],
        inventory="inventory.yaml",
    )
    return Report(assembly.header(info, tool_version="test"), assembly.hosts())


def with_scan(report: Report, **changes: object) -> Report:
    """Return the report with fields of its scan info changed (e.g. interrupted=True)."""
    scan = report.header.scan.model_copy(update=changes)
    return Report(report.header.model_copy(update={"scan": scan}), report.hosts)
