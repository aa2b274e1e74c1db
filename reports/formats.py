"""Report formats and the one table that maps each to its renderer (and to `--format` choices)."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Protocol

from reports import cef, csv_report, ecs, hec, html_report, jsonl, junit, ocsf
from reports.console import render_console
from reports.json_report import render_json
from reports.model import ScanReport


class Format(StrEnum):
    """Output formats of `natt-audit scan -f` and `export -f`. Each has one module under reports/."""

    # StrEnum (a str and an Enum, ruff UP042): str(Format.JSON) == "json" for argparse choices.

    CONSOLE = "console"  # reports/console.py: rich, for people at a terminal
    JSON = "json"  # reports/json_report.py: the report itself, schema in `natt-audit schema report`
    JSONL = "jsonl"  # reports/jsonl.py: one finding per line
    CSV = "csv"  # reports/csv_report.py: formula-injection safe
    CEF = "cef"  # reports/cef.py: ArcSight Common Event Format, one event per line
    OCSF = "ocsf"  # reports/ocsf.py: OCSF 1.8.0 Compliance Finding (2003), one event per line
    ECS = "ecs"  # reports/ecs.py: Elastic Common Schema posture findings, one document per line
    HEC = "hec"  # reports/hec.py: Splunk HTTP Event Collector events with CIM-named fields
    JUNIT = "junit"  # reports/junit.py: JUnit XML for CI pipelines
    HTML = "html"  # reports/html_report.py: one self-contained page for people


class Renderer(Protocol):
    """A pure function from a report to its text in one format."""

    def __call__(self, report: ScanReport, *, color: bool, width: int | None = None) -> str: ...


def _plain(fn: Callable[[ScanReport], str]) -> Renderer:
    """Adapt a renderer that has no terminal options (colour, width) to the common signature."""

    def render(report: ScanReport, *, color: bool, width: int | None = None) -> str:
        return fn(report)

    return render


RENDERERS: dict[Format, Renderer] = {
    Format.CONSOLE: render_console,
    Format.JSON: render_json,
    Format.JSONL: _plain(jsonl.render),
    Format.CSV: _plain(csv_report.render),
    Format.CEF: _plain(cef.render),
    Format.OCSF: _plain(ocsf.render),
    Format.ECS: _plain(ecs.render),
    Format.HEC: _plain(hec.render),
    Format.JUNIT: _plain(junit.render),
    Format.HTML: _plain(html_report.render),
}

# Formats that export findings (everything but the terminal view); `export -f` offers these.
EXPORT_FORMATS: tuple[Format, ...] = tuple(f for f in Format if f is not Format.CONSOLE)


def render(report: ScanReport, fmt: Format, *, color: bool, width: int | None = None) -> str:
    """Return the report rendered in `fmt`; `color`/`width` matter only to terminal formats."""
    return RENDERERS[fmt](report, color=color, width=width)
