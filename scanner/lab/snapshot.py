"""The lab's host state as JSON (`lab serve --state-out`): what the registry holds and what is in force.

Per host: every value at the two keys the NAT-T value can live at (docs/domain.md#registry-locations),
as `{stored name: [type, data]}` (`null` for a key that does not exist), and the Policy Agent:
its State, how often it was stopped and started, and the value it read at its last start
(`effective`, `[type, data]`, or `null`). Tests compare it before and after a change.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanner.core.models import IPSEC_KEY, POLICYAGENT_KEY

if TYPE_CHECKING:
    from scanner.lab.wsman import HostState


def host_state(st: HostState) -> dict[str, Any]:
    """Return one host's registry values at both keys and its Policy Agent's state."""
    registry: dict[str, dict[str, list[Any]] | None] = {}
    for path in (IPSEC_KEY, POLICYAGENT_KEY):
        key = st.host.key(path)
        registry[path] = None if key is None else {name: [t, data] for name, t, data in key.values.values()}
    agent = st.policyagent
    return {
        "registry": registry,
        "policyagent": {
            "state": agent.current(),
            "effective": None if agent.effective is None else list(agent.effective),
            "starts": agent.starts,
            "stops": agent.stops,
        },
    }


def write_state(path: Path, states: dict[str, HostState]) -> None:
    """Write every served host's state as JSON, atomically (temp file + rename)."""
    document = {"hosts": {name: host_state(st) for name, st in states.items()}}
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(document, sort_keys=True) + "\n")
    os.replace(tmp, path)
