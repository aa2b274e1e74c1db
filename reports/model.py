"""The report document every renderer reads. Deterministic: hosts by name, results by rule id."""

from __future__ import annotations

from pydantic import Field

from rules.results import RuleResult, Status
from scanner.models import Frozen, HostError, OsInfo
from scanner.semantics import Setting

SCHEMA_VERSION = "1.0"


class Tool(Frozen):
    """Name and version of the tool that wrote the report."""

    name: str = "natt-audit"
    version: str


class ScanInfo(Frozen):
    """Identity and timing of one scan."""

    id: str
    started_at: str  # RFC 3339, UTC, e.g. 2026-11-27T01:00:00Z
    finished_at: str
    policies: list[str]  # policy names (built-in) or file paths, in the order given
    inventory: str | None = None
    interrupted: bool = False


class Summary(Frozen):
    """Headline counts."""

    hosts_total: int
    hosts_by_status: dict[str, int]  # every Status value is a key, zero included
    coverage: float  # hosts read successfully / hosts in the inventory, 4 decimals
    modes: dict[str, int] = Field(default_factory=dict)  # effective mode -> hosts, read hosts only
    requests_total: int = 0


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


class ScanReport(Frozen):
    """The whole report: what `-f json` writes and what every other renderer reads."""

    schema_version: str = SCHEMA_VERSION
    tool: Tool
    scan: ScanInfo
    summary: Summary
    hosts: list[HostReport]
