"""One lab process serves 10,000 hosts and starts in seconds."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.peers.lab import start_lab
from tests.support.labwire import PA, VALUE, protocol, reg_call

ESTATE = r"""accounts:
  - {username: 'LAB\auditor', password: 'Lab-Passw0rd!'}
defaults: {wmi_ms: 0}
generate:
  - {count: 10000, prefix: ws-, os: win11, seed: 7, mode_mix: {absent: 0.6, "0": 0.2, "1": 0.1, "2": 0.1},
     fault_mix: {refuse: 0.01}}
"""


@pytest.mark.slow
def test_ten_thousand_hosts(tmp_path: Path) -> None:
    estate = tmp_path / "estate.yaml"
    estate.write_text(ESTATE, encoding="utf-8")
    t0 = time.monotonic()
    with start_lab(estate, tmp_path, timeout=60) as lab:
        ready = time.monotonic() - t0
        assert len(lab.hosts) == 10_000
        assert len({port for _, port, _ in lab.hosts.values()}) == 10_000
        assert ready < 20, f"lab took {ready:.1f}s to be ready"
        assert "serving 10000 hosts" in lab.stderr()
        rng = random.Random(1)
        from scanner.lab.estate import load_estate

        resolved = {h.name: h for h in load_estate(estate).resolved()}
        for name in rng.sample(sorted(n for n, h in resolved.items() if h.fault is None), 5):
            out = reg_call(protocol(lab.endpoint(name)), "GetDWORDValue", PA, VALUE)
            stored = resolved[name].key(PA)
            value = stored.values.get(VALUE.lower()) if stored else None
            assert out["ReturnValue"] == ["0" if value else "1"]
