"""Read a running lab's host state (`lab serve --state-out`, docs/lab.md#applying-changes)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from tests.peers.lab import RunningLab

STATE_FILE = "state.json"  # next to the inventory: start the lab with --state-out <workdir>/state.json


def state_args(workdir: Path) -> list[str]:
    """Return the `lab serve` arguments that make `read_state` work for a lab started in `workdir`."""
    return ["--state-out", str(workdir / STATE_FILE)]


def read_state(lab: RunningLab, timeout: float = 10.0) -> dict[str, Any]:
    """Ask the lab for its state now (SIGUSR1) and return the hosts' part: name -> registry and service."""
    path = lab.inventory.parent / STATE_FILE
    path.unlink(missing_ok=True)
    lab.process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the lab wrote no state file in {timeout} s:\n{lab.stderr()}")
        time.sleep(0.02)
    hosts: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["hosts"]
    return hosts
