"""Fixtures for the transport tests: rsyslog and a fake HEC, each stopped by a finalizer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.receivers import TOKEN, FakeHec, Rsyslog


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    """Return a running rsyslogd with UDP, TCP and TLS inputs on loopback."""
    server = Rsyslog(tmp_path_factory.mktemp("rsyslog"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_hec(tmp_path: Path) -> Iterator[FakeHec]:
    """Return a running fake Splunk HEC that expects TOKEN."""
    server = FakeHec(tmp_path, TOKEN)
    try:
        server.start()
        yield server
    finally:
        server.stop()
