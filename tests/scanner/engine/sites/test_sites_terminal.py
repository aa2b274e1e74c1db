"""Per-site progress on a real terminal: `scan --broker` with stderr on a pseudo-terminal.

docs/sites.md: on a terminal the coordinator draws one bar for the scan and one per site under it;
the report still goes to its file, and nothing but counts reaches the terminal.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from tests.peers.redis_server import RunningRedis
from tests.scanner.engine.sites.conftest import Estate, broker_env
from tests.support.cliproc import CLI, REPO, cli_env
from tests.support.sites import lab_hosts, report_hosts, site_inventory, worker

pytestmark = pytest.mark.slow

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def _on_a_terminal(argv: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal (stdout and stdin not); return (status, terminal text)."""
    primary, secondary = pty.openpty()
    chunks: list[bytes] = []
    try:
        child = subprocess.Popen(
            [*CLI, *argv], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=secondary,
            env=cli_env({**env, "COLUMNS": "120", "TERM": "xterm"}), cwd=REPO,
        )  # fmt: skip
        os.close(secondary)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.2)
            if ready:
                try:
                    data = os.read(primary, 65536)
                except OSError:  # EIO: the child closed its end of the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif child.poll() is not None:
                break
        status = child.wait(timeout=10)
    finally:
        os.close(primary)
    return status, ANSI.sub(b"", b"".join(chunks)).decode("utf-8", "replace")


def test_the_coordinator_draws_a_bar_per_site_on_a_terminal(
    redis: RunningRedis, estate: Estate, tmp_path: Path
) -> None:
    hosts = lab_hosts(estate.lab.inventory)
    inventory = site_inventory(tmp_path / "inv.yaml", {"alpha": hosts[:40], "beta": hosts[40:70]})
    report = tmp_path / "r.json"
    with (
        worker(redis.url(), "alpha", {**estate.creds(), **broker_env(redis)}, tmp_path / "alpha.log"),
        worker(redis.url(), "beta", {**estate.creds(), **broker_env(redis)}, tmp_path / "beta.log"),
    ):
        status, screen = _on_a_terminal(
            ["scan", "-i", str(inventory), "--broker", redis.url(), "--no-history", "-f", "json", "-o", str(report)],
            env=broker_env(redis),
        )
    assert status in (0, 1), screen
    # The last frame of each bar: the total, then one per site with its own count.
    assert re.search(r"Scanning\s.*\b70/70\b", screen), screen
    assert re.search(r"site alpha\s.*\b40/40\b", screen), screen
    assert re.search(r"site beta\s.*\b30/30\b", screen), screen
    assert "scanned 70 hosts" in screen  # the summary follows the bars on the same stream
    assert len(report_hosts(report)) == 70  # the report went to its file, not to the terminal
    assert not any(str(host["name"]) in screen for host in hosts[:70])  # counts only, never host text
