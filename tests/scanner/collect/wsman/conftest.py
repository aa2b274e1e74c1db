"""Shared fixtures: a real NTLM client/server context pair (pyspnego both sides)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import spnego

USERNAME = "LAB\\auditor"
PASSWORD = "Lab-Passw0rd!"  # test-only lab account


@pytest.fixture
def ntlm_user_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point pyspnego's NTLM acceptor at a one-account credential file."""
    path = tmp_path / "ntlm-users"
    path.write_text(f"LAB:auditor:{PASSWORD}\n", encoding="utf-8")
    monkeypatch.setenv("NTLM_USER_FILE", str(path))
    return path


@pytest.fixture
def ntlm_pair(ntlm_user_file: Path) -> tuple[Any, Any]:
    """Return an established (client, server) NTLM context pair."""
    client = spnego.client(USERNAME, PASSWORD, hostname="host", service="http", protocol="ntlm")
    server = spnego.server(protocol="ntlm")
    server.step(client.step(server.step(client.step())))
    assert client.complete
    assert server.complete
    return client, server
