"""Every format has a renderer and a golden file; renderers are pure and match their goldens."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from reports.formats import RENDERERS
from reports.hosts import Report
from scanner.core.formats import Format
from tests.support.sample_report import GOLDEN_DIR, GOLDEN_WIDTH, rendered


def golden_name(fmt: Format) -> str:
    """Return the golden file of a format (rendered without colour at the golden width)."""
    return f"report.{fmt.value}.golden"


def test_every_format_has_a_renderer_and_a_golden_file() -> None:
    assert set(RENDERERS) == set(Format)
    missing = [fmt.value for fmt in Format if not (GOLDEN_DIR / golden_name(fmt)).is_file()]
    assert missing == []


@pytest.mark.parametrize("fmt", list(Format))
def test_output_matches_golden(
    fmt: Format, sample_report: Report, check_golden: Callable[[str, str], None]
) -> None:
    check_golden(golden_name(fmt), rendered(sample_report, fmt, color=False, width=GOLDEN_WIDTH))


@pytest.mark.parametrize("fmt", list(Format))
def test_renderers_are_pure_and_end_with_a_newline(fmt: Format, sample_report: Report) -> None:
    first = rendered(sample_report, fmt, color=True, width=100)
    assert first == rendered(sample_report, fmt, color=True, width=100)
    assert first.endswith("\n")


def test_format_values_are_the_cli_names() -> None:
    names = ["console", "json", "jsonl", "csv", "cef", "ocsf", "ecs", "hec", "junit", "html"]
    assert [f.value for f in Format] == names
    assert Format("json") is Format.JSON
    assert str(Format.CONSOLE) == "console"
