"""Fixtures for the export-format tests: golden files under exports/golden/ (UPDATE_GOLDENS=1 rewrites)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="session")
def export_golden() -> Callable[[str, str], None]:
    """Return a checker comparing text with golden/<name>; UPDATE_GOLDENS=1 rewrites the file."""

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if os.environ.get("UPDATE_GOLDENS") == "1":
            GOLDEN.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode("utf-8"))
        assert path.is_file(), f"missing golden file {path}; run with UPDATE_GOLDENS=1 to create it"
        assert text == path.read_bytes().decode("utf-8"), f"{name} differs; UPDATE_GOLDENS=1 rewrites it"

    return check
