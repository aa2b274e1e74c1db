"""Fixtures for the report tests: the sample report and golden-file handling.

Regenerate the golden files after an intended output change with either
    UPDATE_GOLDENS=1 python -m pytest tests/reports
    python -m pytest tests/reports --update-goldens
then review the diff of tests/reports/formats/golden/ before committing it. The export-format tests
(formats/test_export_formats.py) check the same golden files as the renderer tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from reports.hosts import Report
from tests.support.sample_report import GOLDEN_DIR, make_sample_report


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add --update-goldens (works when pytest is started on tests/reports or below)."""
    parser.addoption("--update-goldens", action="store_true", default=False, help="rewrite golden files")


@pytest.fixture(scope="session")
def update_goldens(request: pytest.FixtureRequest) -> bool:
    """Return whether golden files are rewritten instead of compared."""
    option = bool(request.config.getoption("--update-goldens", default=False))
    return option or os.environ.get("UPDATE_GOLDENS") == "1"


@pytest.fixture(scope="session")
def check_golden(update_goldens: bool) -> Callable[[str, str], None]:
    """Return a checker that compares text with golden/<name> (or rewrites it when updating)."""

    def check(name: str, text: str) -> None:
        path = GOLDEN_DIR / name
        if update_goldens:
            GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode("utf-8"))
        assert path.is_file(), f"missing golden file {path}; run with UPDATE_GOLDENS=1 to create it"
        expected = path.read_bytes().decode("utf-8")
        assert text == expected, f"{name} differs from its golden file; UPDATE_GOLDENS=1 rewrites it"

    return check


@pytest.fixture(scope="session")
def sample_report() -> Report:
    """Return the fixed hostile sample report."""
    return make_sample_report()



@pytest.fixture(scope="session")
def export_golden(check_golden: Callable[[str, str], None]) -> Callable[[str, str], None]:
    """Return check_golden keyed by export file name: report.<format>[.<ext>] is report.<format>.golden."""

    def check(name: str, text: str) -> None:
        check_golden(f"report.{name.split('.')[1]}.golden", text)

    return check
