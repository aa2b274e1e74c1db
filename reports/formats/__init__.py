"""One module per output format, and the one table that maps each `Format` to its renderer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TextIO

from reports.formats import cef, csv_report, ecs, hec, html_report, jsonl, junit, ocsf
from reports.formats.console import render_console
from reports.formats.json_report import render_json
from reports.hosts import Hosts
from reports.model import ReportHeader
from scanner.core.formats import Format


class Renderer(Protocol):
    """A pure function from a report (header and hosts) to its text in one format, written to `out`."""

    def __call__(
        self, header: ReportHeader, hosts: Hosts, out: TextIO, *, color: bool, width: int | None = None
    ) -> None: ...


def _plain(fn: Callable[[ReportHeader, Hosts, TextIO], None]) -> Renderer:
    """Adapt a renderer that has no terminal options (colour, width) to the common signature."""

    def render(header: ReportHeader, hosts: Hosts, out: TextIO, *, color: bool, width: int | None = None) -> None:
        fn(header, hosts, out)

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


def render(
    header: ReportHeader, hosts: Hosts, fmt: Format, out: TextIO, *, color: bool, width: int | None = None
) -> None:
    """Write the report in `fmt` to `out`; `color`/`width` matter only to terminal formats."""
    RENDERERS[fmt](header, hosts, out, color=color, width=width)
