"""The report's models: a header (`ReportHeader`) and one `HostReport` per host, hosts by name.

A report is a header plus a stream of host reports (reports/hosts.py); `ReportDocument` is the
two together as the JSON file holds them, used only to read a saved report and to derive the JSON
Schema (reports/schema.py).
"""

from __future__ import annotations

from pydantic import Field

from scanner.core.models import Frozen, HostError, OsInfo
from scanner.core.results import RuleResult, Severity, Status
from scanner.core.semantics import Setting

SCHEMA_VERSION = "1.0"


class Tool(Frozen):
    """Name and version of the tool that wrote the report."""

    name: str = "natt-audit"
    version: str


class PolicyRef(Frozen):
    """One policy a scan evaluated: its name, where it came from, and the SHA-256 of its text."""

    name: str
    source: str  # "builtin:NAME" or the policy file's absolute path
    sha256: str


class ScanInfo(Frozen):
    """Identity and timing of one scan."""

    id: str
    started_at: str  # RFC 3339, UTC, e.g. 2026-11-27T01:00:00Z
    finished_at: str
    policies: list[str]  # policy names (built-in) or file paths, in the order given
    inventory: str | None = None
    interrupted: bool = False
    # The policies as evaluated, so `policy explain --report` finds the same ones from any directory
    # and refuses a file that changed since (docs/policies.md "Explain"). Absent from older reports.
    policy_refs: list[PolicyRef] = Field(default_factory=list)


class SiteSummary(Frozen):
    """One site's share of the scan: its hosts, how many were read, and that fraction."""

    hosts: int
    read: int
    coverage: float  # read / hosts, 4 decimals rounded down like Summary.coverage


class Summary(Frozen):
    """Headline counts."""

    hosts_total: int
    hosts_by_status: dict[str, int]  # every Status value is a key, zero included
    coverage: float  # hosts read successfully / hosts in the inventory, 4 decimals
    modes: dict[str, int] = Field(default_factory=dict)  # effective mode -> hosts, read hosts only
    requests_total: int = 0
    # Per site, by name (docs/sites.md#sites); a scan without sites has the one default site.
    sites: dict[str, SiteSummary] = Field(default_factory=dict)
    # Hosts that answered the scan account's logon with 401 (error auth/unauthorized): after a logon
    # accepted elsewhere, the account lacks rights there (docs/authentication.md#lockout-safety).
    auth_rejected: int = 0


class HostReport(Frozen):
    """Everything known about one inventory host."""

    name: str
    address: str
    port: int
    tags: dict[str, str]
    status: Status
    requests: int
    os: OsInfo | None
    setting: Setting | None
    error: HostError | None
    results: list[RuleResult]


class WaiverEntry(Frozen):
    """A waiver named in the report's waiver section."""

    label: str
    rules: list[str]
    expires: str  # ISO date, last day in force
    owner: str | None = None
    ticket: str | None = None
    source: str


class WaiversSection(Frozen):
    """What the report says about the waivers file: soon-expiring, expired, and unmatched waivers."""

    file: str
    warn_days: int
    expiring: list[WaiverEntry] = Field(default_factory=list)
    expired: list[WaiverEntry] = Field(default_factory=list)
    unmatched: list[WaiverEntry] = Field(default_factory=list)


class InventorySource(Frozen):
    """One `sources:` entry of the inventory: the hosts it gave and the entries it skipped, by reason."""

    type: str  # ldap, ansible, file
    name: str  # "ldaps://dc1.corp.example:636", "ansible:inventories/prod.ini", "file:hosts.csv"
    hosts: int
    skipped: dict[str, int] = Field(default_factory=dict)  # "disabled": 12, "stale": 3, ...


class InventorySection(Frozen):
    """Where the inventory's hosts came from, and how often its OS version disagreed with the host's."""

    sources: list[InventorySource] = Field(default_factory=list)
    # Hosts whose read OS version (NTLM CHALLENGE or WMI) contradicts the inventory's os_version
    # (docs/inventory.md#os-facts-from-the-inventory); the read is what the report and the rules use.
    os_version_disagreements: int = 0


class FindingDrift(Frozen):
    """One finding whose failing state changed between two scans (scanner/history/drift.py)."""

    host: str
    rule_id: str
    finding_uid: str
    severity: Severity
    before: Status | None  # None: the host or the rule was not in the previous scan
    after: Status | None  # None: the host or the rule is not in this scan


class SettingDrift(Frozen):
    """One field of a host's setting that differs between two scans where the host was read."""

    host: str
    field: str  # effective_mode, raw_type, raw_value, integrity, applicable_key, stray
    before: str  # JSON text of the value, e.g. "1", "\"REG_DWORD\"", "null"
    after: str


class HostDrift(Frozen):
    """A host whose readability changed: read before and not now, or the reverse."""

    host: str
    reason: str  # stage/reason of the error on the unread side, e.g. "connect/refused"


class Drift(Frozen):
    """What changed since the previous scan of the same inventory; lists sorted by host then rule."""

    previous_scan_id: str
    previous_started_at: str
    new_failures: list[FindingDrift]
    resolved_failures: list[FindingDrift]
    # failing in both scans on a host whose setting changed: the finding's evidence changed
    changed_failures: list[FindingDrift]
    changed_settings: list[SettingDrift]
    newly_unreachable: list[HostDrift]
    reachable_again: list[HostDrift]
    joined: list[str]  # hosts in this scan's inventory, not in the previous one's
    left: list[str]  # hosts in the previous scan's inventory, not in this one's


class ReportHeader(Frozen):
    """Everything in a report except its hosts: what every renderer reads before the hosts."""

    schema_version: str = SCHEMA_VERSION
    tool: Tool
    scan: ScanInfo
    summary: Summary
    # Optional so reports written before history existed still validate; null on a first scan,
    # without a history database, or when no earlier scan of this inventory is recorded.
    drift: Drift | None = None
    waivers: WaiversSection | None = None  # present when the scan ran with --waivers
    # Present when the inventory lists sources, or a host's OS version contradicted the inventory's.
    inventory: InventorySection | None = None


class ReportDocument(Frozen):
    """The JSON report as a file holds it (`-f json`): its field order is the file's key order.

    Only for reading a saved report (reports/hosts.py: `parse_report`) and for the JSON Schema; a
    scan never builds one, since that would hold every host in memory.
    """

    schema_version: str = SCHEMA_VERSION
    tool: Tool
    scan: ScanInfo
    summary: Summary
    hosts: list[HostReport]
    drift: Drift | None = None
    waivers: WaiversSection | None = None
    inventory: InventorySection | None = None

    def header(self) -> ReportHeader:
        """Return the document without its hosts."""
        return ReportHeader(
            schema_version=self.schema_version,
            tool=self.tool,
            scan=self.scan,
            summary=self.summary,
            drift=self.drift,
            waivers=self.waivers,
            inventory=self.inventory,
        )
