"""Session-wide test setup shared by every test package."""

from __future__ import annotations

import os
import tempfile

import pytest

# Fixtures shared across test folders (only the root conftest may register plugins).
pytest_plugins = ["tests.peers.hostile_lab"]


def pytest_configure(config: pytest.Config) -> None:
    """Give this test process its own XDG state folder.

    `natt-audit scan` records history in $XDG_STATE_HOME/natt-audit/history.db by default and
    locks it (exit 4 for a second scan). Test processes running side by side must neither share
    that lock nor write into the user's home, so each pytest process gets a private folder,
    inherited by the CLI subprocesses it starts.
    """
    del config
    if "NATT_AUDIT_TEST_STATE" not in os.environ:
        folder = tempfile.mkdtemp(prefix="natt-audit-test-state-")
        os.environ["NATT_AUDIT_TEST_STATE"] = folder
        os.environ["XDG_STATE_HOME"] = folder
