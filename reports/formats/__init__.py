"""One module per output format, and the one table that maps each `Format` to its renderer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from reports.formats import cef, csv_report, ecs, hec, html_report, jsonl, junit, ocsf
from reports.formats.console import render_console
from reports.formats.json_report import render_json
from reports.model import ScanReport
from scanner.core.formats import Format


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


def render(report: ScanReport, fmt: Format, *, color: bool, width: int | None = None) -> str:
    """Return the report rendered in `fmt`; `color`/`width` matter only to terminal formats."""
    return RENDERERS[fmt](report, color=color, width=width)
