"""A fixed, hand-built sample scan: every status, integrity and oddity, and hostile host text.

Reports are assembled as a scan assembles them (reports/build.py: `ReportAssembly`, the engine's
path), with the hosts kept in memory instead of a disk spill.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from reports.build import ReportAssembly
from reports.formats import render
from reports.hosts import HostBuffer, MemoryHosts, Report
from reports.model import HostReport, InventorySource, PolicyRef, ScanInfo
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
from scanner.core.results import RuleResult, Severity, Status, finding_uid
from scanner.core.semantics import assess

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "reports" / "formats" / "golden"
GOLDEN_WIDTH = 120  # console goldens are rendered without colour at this width

# Every trick docs/reliability.md#host-supplied-text names, in one caption: SGR, an OSC 8 hyperlink, rich markup, a bidi
# override, a newline, a tab, a C1 CSI, DEL, a zero-width space and a BOM.
HOSTILE_CAPTION = (
    "Windows \x1b[31mRED\x1b[0m \x1b]8;;http://evil\x07click\x1b]8;;\x07 [bold red]PASS[/] "
    "[link=http://evil]x[/link] \u202eevil\u202c\nsecond line\tend \x9b2J \x7f \u200b\ufeff|=\\"
)
CHINESE_CAPTION = "Microsoft Windows 10 专业版"


def win(version: str, caption: str | None, *, sp: int = 0) -> OsInfo:
    """Return OS facts with the build taken from the version."""
    build = (
        int(version.split(".")[2]) if version.count(".") >= 2 and version.split(".")[2].isdigit() else None
    )
    return OsInfo(version=version, build=build, service_pack=sp, caption=caption)


def dword(
    key: str, data: int | str | list[str] | None, type_: str = "REG_DWORD", name: str = VALUE_NAME
) -> KeyRead:
    """Return a key read holding the NAT-T value."""
    return KeyRead(key=key, key_present=True, value=RegistryValue(name=name, type=type_, data=data))


def empty(key: str, *, present: bool = True) -> KeyRead:
    """Return a key read without the value."""
    return KeyRead(key=key, key_present=present)


def target(name: str, port: int = 5985, *, os_version: str | None = None, **tags: str) -> Target:
    """Return a loopback target."""
    return Target(
        name=name, address="127.0.0.1", port=port, tags=tags, source=f"inventory.yaml:{port}", os_version=os_version
    )


RULES = {
    "NATT-001": ("Effective mode is not 2", Severity.HIGH),
    "NATT-002": ("Value is a REG_DWORD of 0, 1 or 2", Severity.MEDIUM),
    "NATT-003": ("No value at a key the OS ignores", Severity.LOW),
}


def result(rule_id: str, host: str, status: Status, message: str) -> RuleResult:
    """Return one rule result for host."""
    title, severity = RULES[rule_id]
    return RuleResult(
        rule_id=rule_id,
        title=title,
        severity=severity,
        status=status,
        message=message,
        finding_id=finding_uid(rule_id, host),
    )


def triple(host: str, s1: Status, m1: str, s2: Status, m2: str, s3: Status, m3: str) -> list[RuleResult]:
    """Return the three baseline results, deliberately out of rule order."""
    return [
        result("NATT-003", host, s3, m3),
        result("NATT-001", host, s1, m1),
        result("NATT-002", host, s2, m2),
    ]


P, F, E, NA, W = Status.PASS, Status.FAIL, Status.ERROR, Status.NOT_APPLICABLE, Status.WAIVED
OK2 = "value is a REG_DWORD of 0, 1 or 2"
NOSTRAY = "no value at an ignored key"


def sample_inputs() -> tuple[list[Observation], dict[str, list[RuleResult]]]:
    """Return hand-built observations and results covering every status, integrity and oddity."""
    pa, ip = POLICYAGENT_KEY, IPSEC_KEY
    obs: list[Observation] = []
    res: dict[str, list[RuleResult]] = {}

    def add(o: Observation, r: list[RuleResult]) -> None:
        obs.append(o)
        res[o.target.name] = r

    unread = "host could not be read"
    add(
        Observation(
            target=target("srv-pass-01", 5985, os_version="10.0", site="par", role="web"),  # agrees with the read
            requests=8,
            os=win("10.0.19045", "Microsoft Windows 10 Pro"),
            keys=(empty(ip), dword(pa, 0)),
        ),
        triple("srv-pass-01", P, "effective mode 0", P, OK2, P, NOSTRAY),
    )
    add(
        Observation(
            target=target("SRV-pass-02", 5986, os_version="10.0.17763"),  # the directory is wrong: WMI says 6.1
            requests=8,
            os=win("6.1.7601", "Microsoft Windows 7 Enterprise", sp=1),
            keys=(empty(ip), empty(pa, present=False)),
        ),
        triple("SRV-pass-02", P, "effective mode 0 (default: value absent)", P, "no value", P, NOSTRAY),
    )
    add(
        Observation(
            target=target("srv-mode2", 5987, site="lon"),
            requests=8,
            os=win("10.0.20348", "Microsoft Windows Server 2022 Standard"),
            keys=(empty(ip), dword(pa, 2)),
        ),
        triple("srv-mode2", F, "effective mode 2: NAT-T with both ends behind NAT", P, OK2, P, NOSTRAY),
    )
    add(
        Observation(
            target=target("srv-invalid-value", 5988),
            requests=8,
            os=win("10.0.17763", "Microsoft Windows Server 2019 Datacenter"),
            keys=(empty(ip), dword(pa, 4294967295)),
        ),
        triple(
            "srv-invalid-value",
            F,
            "effective mode unknown: REG_DWORD 4294967295 is undocumented",
            F,
            "REG_DWORD 4294967295 is outside 0..2",
            P,
            NOSTRAY,
        ),
    )
    add(
        Observation(
            target=target("srv-invalid-type", 5989),
            requests=9,
            os=win("10.0.22631", CHINESE_CAPTION),
            keys=(empty(ip), dword(pa, "2", "REG_SZ")),
        ),
        triple(
            "srv-invalid-type",
            P,
            "effective mode 0 (Windows reads only a REG_DWORD)",
            F,
            'REG_SZ "2" is not a REG_DWORD',
            P,
            NOSTRAY,
        ),
    )
    add(
        Observation(
            target=target("srv-binary", 5990),
            requests=9,
            os=win("6.3.9600", "Microsoft Windows Server 2012 R2 Standard"),
            keys=(dword(ip, ["2", "\x1b[2J"], "REG_MULTI_SZ"), dword(pa, "02000000", "REG_BINARY")),
        ),
        triple(
            "srv-binary",
            P,
            "effective mode 0",
            F,
            "REG_BINARY is not a REG_DWORD",
            F,
            "REG_MULTI_SZ value at Services\\IPsec, which this OS ignores",
        ),
    )
    add(
        Observation(
            target=target("srv-stray", 5991, site="[bold red]PASS[/]", owner="ops\nteam"),
            requests=8,
            os=win("10.0.19045", HOSTILE_CAPTION),
            keys=(dword(ip, 2, name="assumeudpencapsulationcontextonsendrule"), dword(pa, 1)),
        ),
        triple(
            "srv-stray",
            P,
            "effective mode 1",
            P,
            OK2,
            F,
            "REG_DWORD 2 at Services\\IPsec, which this OS ignores",
        ),
    )
    add(
        Observation(
            target=target("srv-qword", 5992),
            requests=9,
            os=win("6.0.6002", "Microsoft® Windows Vista™ Business", sp=2),
            keys=(empty(ip), dword(pa, 2, "REG_QWORD")),
        ),
        triple("srv-qword", P, "effective mode 0", F, "REG_QWORD is not a REG_DWORD", P, NOSTRAY),
    )
    add(
        Observation(
            target=target("srv-waived", 5993, site="par"),
            requests=8,
            os=win("10.0.14393", "Microsoft Windows Server 2016 Standard"),
            keys=(empty(ip), dword(pa, 2)),
        ),
        [
            result("NATT-001", "srv-waived", W, "effective mode 2; waived until 2027-01-31 (CHG-1234)"),
            result("NATT-002", "srv-waived", P, OK2),
            result("NATT-003", "srv-waived", P, NOSTRAY),
        ],
    )
    add(
        Observation(
            target=target("w2k-legacy", 5994),
            requests=7,
            os=win("5.0.2195", "Microsoft Windows 2000 Server", sp=4),
            keys=(empty(ip), empty(pa)),
        ),
        triple(
            "w2k-legacy",
            NA,
            "Windows 2000 has no such setting",
            NA,
            "Windows 2000 has no such setting",
            NA,
            "Windows 2000 has no such setting",
        ),
    )
    add(
        Observation(
            target=target("xp-sp1", 5995),
            requests=7,
            os=win("5.1.2600", "Microsoft Windows XP Professional", sp=1),
            keys=(empty(ip), empty(pa)),
        ),
        triple(
            "xp-sp1",
            F,
            "XP before SP2: legacy NAT-T behaves as mode 2",
            NA,
            "XP before SP2 ignores the value",
            NA,
            "XP before SP2 ignores the value",
        ),
    )
    add(
        Observation(
            target=target("xp-sp3", 5996),
            requests=7,
            os=win("5.1.2600", "Microsoft Windows XP Professional", sp=3),
            keys=(dword(ip, 1), empty(pa)),
        ),
        triple("xp-sp3", P, "effective mode 1", P, OK2, P, NOSTRAY),
    )
    add(
        Observation(
            target=target("srv-odd-version", 5997),
            requests=8,
            os=OsInfo(version="garbage", caption="Microsoft Windows 11 Pro"),
            keys=(empty(ip), dword(pa, 0)),
        ),
        triple(
            "srv-odd-version",
            F,
            "OS version 'garbage' cannot be classified: mode unknown (fail closed)",
            F,
            "OS version cannot be classified",
            P,
            NOSTRAY,
        ),
    )
    add(
        Observation(
            target=target("srv-refused", 5998),
            requests=0,
            error=HostError(stage=Stage.CONNECT, reason="refused", message="connection refused"),
        ),
        triple("srv-refused", E, unread, E, unread, E, unread),
    )
    add(
        Observation(
            target=target("srv-timeout", 5999),
            requests=3,
            error=HostError(
                stage=Stage.TIMEOUT, reason="host_deadline", message="no complete reply within 30 s"
            ),
        ),
        [],  # no results at all: still error
    )
    add(
        Observation(
            target=target("srv-auth", 6000),
            requests=2,
            error=HostError(
                stage=Stage.PARSE,
                reason="soap_fault",
                message="fault text: \x1b]0;pwned\x07[red]ok[/red]\r\nline",
            ),
        ),
        triple("srv-auth", E, unread, E, unread, E, unread),
    )
    return obs, res


SCAN = ScanInfo(
    id="3d8c1f0e-6a7b-4c2d-9e1f-0a2b3c4d5e6f",
    started_at="2026-11-27T01:00:00Z",
    finished_at="2026-11-27T01:00:42Z",
    policies=["baseline", "policies/[site]-extra.yaml"],
    inventory="inventory.yaml",
    policy_refs=[
        PolicyRef(name="baseline", source="builtin:baseline", sha256="0" * 64),
        PolicyRef(name="site-extra", source="/etc/natt-audit/policies/[site]-extra.yaml", sha256="f" * 64),
    ],
)


def assembly_of(
    observations: Iterable[Observation], results: Mapping[str, Sequence[RuleResult]]
) -> ReportAssembly:
    """Return an in-memory assembly fed each observation with its results, as the engine feeds it."""
    assembly = ReportAssembly(HostBuffer())
    for observation in observations:
        assembly.add(observation, results.get(observation.target.name, ()), setting=assess(observation))
    return assembly


def assemble(
    observations: Iterable[Observation],
    results: Mapping[str, Sequence[RuleResult]],
    scan: ScanInfo = SCAN,
    *,
    tool_version: str = "0",
) -> Report:
    """Return the report (header and in-memory hosts) of these hosts and results."""
    assembly = assembly_of(observations, results)
    return Report(assembly.header(scan, tool_version=tool_version), assembly.hosts())


# The sample inventory's sources (docs/inventory.md#sources), as the report's inventory section names them.
SOURCES = (
    InventorySource(type="ldap", name="ldaps://dc1.corp.example:636", hosts=9, skipped={"disabled": 2, "stale": 1}),
    InventorySource(type="ansible", name="ansible:inventories/prod.ini", hosts=1),
)


def make_sample_report() -> Report:
    """Return the fixed report the golden files are rendered from."""
    observations, results = sample_inputs()
    assembly = assembly_of(observations, results)
    return Report(assembly.header(SCAN, tool_version="0.1.0", inventory_sources=SOURCES), assembly.hosts())


def with_hosts(report: Report, hosts: Iterable[HostReport]) -> Report:
    """Return the report with other hosts (in this order) under the same header."""
    return Report(report.header, MemoryHosts.of(hosts))


def rendered(report: Report, fmt: Format, *, color: bool = False, width: int | None = None) -> str:
    """Return the text the renderer of `fmt` writes for the report."""
    out = io.StringIO()
    render(report.header, report.hosts, fmt, out, color=color, width=width)
    return out.getvalue()
