"""Report formats and the one table that maps each to its renderer."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from reports.console import render_console
from reports.json_report import render_json
from reports.model import ScanReport


class Format(StrEnum):
    """Output formats of `natt-audit scan -f`. Each has one module under reports/."""

    # StrEnum (a str and an Enum, ruff UP042): str(Format.JSON) == "json" for argparse choices.

    CONSOLE = "console"
    JSON = "json"


class Renderer(Protocol):
    """A pure function from a report to its text in one format."""

    def __call__(self, report: ScanReport, *, color: bool, width: int | None = None) -> str: ...


RENDERERS: dict[Format, Renderer] = {
    Format.CONSOLE: render_console,
    Format.JSON: render_json,
}


def render(report: ScanReport, fmt: Format, *, color: bool, width: int | None = None) -> str:
    """Return the report rendered in `fmt`; `color`/`width` matter only to terminal formats."""
    return RENDERERS[fmt](report, color=color, width=width)
