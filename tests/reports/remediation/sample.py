"""A fixed report with every remediation row, evaluated by the real baseline policy; and its plan."""

from __future__ import annotations

from pathlib import Path

from reports.hosts import Report
from reports.model import ScanInfo
from reports.remediation.plan import RemediationPlan
from reports.remediation.planner import build_plan
from rules.evaluate import evaluate
from rules.loader import builtin_policy
from scanner.core.formats import Format
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
from scanner.core.results import RuleResult, Status, WaiverNote
from tests.support.sample_report import assemble, rendered

HERE = Path(__file__).parent
GOLDEN_DIR = HERE / "golden"
TOOL_VERSION = "0.1.0"
# Host-supplied data that would be code in a careless writer: a template for Ansible, a quote and
# a statement for PowerShell, a line break and a .reg line, XML markup, a bidi override.
HOSTILE_SZ = "1'; Remove-Item C:\\ -Recurse #\r\n\"AssumeUDPEncapsulationContextOnSendRule\"=dword:00000002\u202e"
HOSTILE_MULTI = ["{{ lookup('pipe', 'touch /tmp/natt-pwned') }}", "</desc><x a='1'>", "\u2019; exit\u2018"]

SCAN = ScanInfo(
    id="3f7c2a10-0b1e-4f5e-9a6d-1c2b3a4d5e6f",
    started_at="2026-11-27T01:00:00Z",
    finished_at="2026-11-27T01:02:03Z",
    policies=["baseline"],
    inventory="inventory.yaml",
)


def _os(version: str, sp: int) -> OsInfo:
    build = int(version.split(".")[2]) if version.count(".") == 2 and version.split(".")[2].isdigit() else None
    return OsInfo(version=version, build=build, service_pack=sp, caption="Microsoft Windows")


def _value(key: str, type_: str, data: int | str | list[str] | None, name: str = VALUE_NAME) -> KeyRead:
    return KeyRead(key=key, key_present=True, value=RegistryValue(name=name, type=type_, data=data))


def _empty(key: str, present: bool = True) -> KeyRead:
    return KeyRead(key=key, key_present=present)


def _host(name: str, port: int, version: str, sp: int, ipsec: KeyRead | None, agent: KeyRead | None) -> Observation:
    target = Target(name=name, address=f"192.0.2.{port - 5900}", port=port, tags={"site": "lab"})
    keys = (ipsec or _empty(IPSEC_KEY), agent or _empty(POLICYAGENT_KEY))
    return Observation(target=target, requests=5, os=_os(version, sp), keys=keys)


XP_SP3 = ("5.1.2600", 3)
XP_SP2 = ("5.1.2600", 2)
W2003 = ("5.2.3790", 2)
WIN10 = ("10.0.19045", 0)
WIN11 = ("10.0.22631", 0)


def observations() -> list[Observation]:
    """Return one host per row of docs/remediation.md#what-gets-planned."""
    return [
        # XP SP2+/2003: Services\IPsec applies
        _host("xp-sp2-mode2", 5901, *XP_SP2, _value(IPSEC_KEY, "REG_DWORD", 2), None),
        _host("xp-sp3-stray", 5902, *XP_SP3, None, _value(POLICYAGENT_KEY, "REG_DWORD", 1)),
        _host(
            "w2003-sz", 5903, *W2003, _value(IPSEC_KEY, "REG_SZ", "2"), _value(POLICYAGENT_KEY, "REG_SZ", HOSTILE_SZ)
        ),
        # Vista and later: Services\PolicyAgent applies
        _host(
            "w10-mode2-stray", 5904, *WIN10, _value(IPSEC_KEY, "REG_DWORD", 2), _value(POLICYAGENT_KEY, "REG_DWORD", 2)
        ),
        _host("w10-sz", 5905, *WIN10, None, _value(POLICYAGENT_KEY, "REG_SZ", "2")),
        _host("w11-dword3", 5906, *WIN11, None, _value(POLICYAGENT_KEY, "REG_DWORD", 3)),
        _host("w10-multi", 5907, *WIN10, None, _value(POLICYAGENT_KEY, "REG_MULTI_SZ", HOSTILE_MULTI)),
        _host("w10-binary", 5908, *WIN10, None, _value(POLICYAGENT_KEY, "REG_BINARY", "02000000")),
        _host("w10-qword-lower", 5909, *WIN10, None, _value(POLICYAGENT_KEY, "REG_QWORD", 2, VALUE_NAME.lower())),
        _host(
            "w2019-keyabsent-stray", 5910, "10.0.17763", 0, _value(IPSEC_KEY, "REG_EXPAND_SZ", "%SystemRoot%"),
            _empty(POLICYAGENT_KEY, present=False),
        ),
        _host("w10-mode0", 5911, *WIN10, None, _value(POLICYAGENT_KEY, "REG_DWORD", 0)),
        _host("w10-waived", 5912, *WIN10, None, _value(POLICYAGENT_KEY, "REG_DWORD", 2)),
        # no value fixes these
        _host("xp-sp1", 5913, "5.1.2600", 1, _value(IPSEC_KEY, "REG_DWORD", 0), None),
        _host("win2000", 5914, "5.0.2195", 4, _value(IPSEC_KEY, "REG_DWORD", 2), None),
        _host("unknown-os", 5915, "6.x", 0, None, _value(POLICYAGENT_KEY, "REG_DWORD", 2)),
        Observation(
            target=Target(name="unreachable", address="192.0.2.99", port=5985),
            error=HostError(stage=Stage.CONNECT, reason="refused", message="connection refused"),
        ),
    ]


def _waive(results: list[RuleResult], rule_id: str) -> list[RuleResult]:
    note = WaiverNote(
        label="W-1", state="applied", justification="VPN gateway", expires="2027-01-31", source="waivers.yaml:2"
    )
    return [
        r.model_copy(update={"status": Status.WAIVED, "waiver": note}) if r.rule_id == rule_id else r
        for r in results
    ]


def make_report() -> Report:
    """Return the fixed report: every host evaluated by the built-in baseline, one failure waived."""
    policies = [builtin_policy("baseline")]
    observed = observations()
    results = {o.target.name: evaluate(o, policies) for o in observed}
    results["w10-waived"] = _waive(results["w10-waived"], "NATT-001")
    return assemble(observed, results, SCAN, tool_version=TOOL_VERSION)


def report_json(report: Report) -> str:
    """Return the report as `scan -f json` writes it."""
    return rendered(report, Format.JSON)


def make_plan() -> RemediationPlan:
    """Return the plan of the fixed report with the baseline's fixes."""
    report = make_report()
    return build_plan(
        report.header.scan,
        report.hosts,
        [builtin_policy("baseline")],
        report_schema_version=report.header.schema_version,
        policy_specs=["baseline"],
        tool_version=TOOL_VERSION,
    )
