"""Smoke run of benchmarks/bench_ldap.py on the session's DC with 1,100 objects: it must keep working."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tests.peers.samba_dc import SambaDC

BENCH = Path(__file__).resolve().parent.parent.parent / "benchmarks" / "bench_ldap.py"
# The last line's keys: restated here, not imported, so the script cannot change its contract and still pass.
KEYS = ["objects", "pages", "wall_s", "peak_rss_mb"]


def bench_module() -> ModuleType:
    """Import benchmarks/bench_ldap.py as a module."""
    spec = importlib.util.spec_from_file_location("bench_ldap", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_ldap"] = module
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_loads_and_resolves_through_the_ldap_source_in_a_child(samba_dc: SambaDC) -> None:
    bench = bench_module()
    assert bench.load(samba_dc, 1100, batch=600)[0] == 1100  # two ldbadd transactions
    measured = bench.measure(samba_dc, 1100, page_size=500, load_s=0.0)
    assert (measured.objects, measured.hosts, measured.pages) == (1100, 1045, 3)  # 1 in 20 disabled
    pairs = dict(item.split("=", 1) for item in measured.line().split(" "))
    assert list(pairs) == KEYS
    assert float(pairs["peak_rss_mb"]) > 10 and float(pairs["wall_s"]) > 0
