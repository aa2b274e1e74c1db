"""Smoke run of benchmarks/bench_scan.py on 50 lab hosts: it must keep working. Nothing is timed."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from pathlib import Path

import pytest

from reports.formats.json_report import render_json, render_json_whole
from reports.hosts import MemoryHosts, parse_report

REPO = Path(__file__).resolve().parent.parent.parent
# The final line's keys as README.md's Performance section lists them: restated, not imported from the script, so the
# script cannot change the contract and still pass.
KEYS = [
    "hosts",
    "latency_ms",
    "wall_s",
    "hosts_per_s",
    "cpu_ms_per_host",
    "requests_per_host",
    "peak_rss_mb",
    "naive_wall_s",
    "naive_cpu_ms_per_host",
    "naive_requests_per_host",
    "speedup",
]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Run the benchmark once (50 hosts, the baseline on a 16-host sample); return stdout and the report."""
    report = tmp_path_factory.mktemp("bench") / "report.json"
    argv = [
        sys.executable,
        str(REPO / "benchmarks" / "bench_scan.py"),
        "--hosts", "50",
        "--latency-ms", "2",
        "--naive-sample", "16",
        "--keep", str(report),
    ]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, report


def test_last_line_has_every_key_with_a_number(bench: tuple[str, Path]) -> None:
    stdout, _ = bench
    last = stdout.strip().splitlines()[-1]
    pairs = dict(item.split("=", 1) for item in last.split(" "))
    assert list(pairs) == KEYS
    values = {key: float(value) for key, value in pairs.items()}
    assert all(math.isfinite(v) for v in values.values()), last
    assert values["hosts"] == 50
    assert values["latency_ms"] == 2
    # Behaviour, not speed: the scanner makes 5 requests per host (more only for non-DWORD
    # values); pywinrm's run_ps makes at least 8 (docs/domain.md#client-limits).
    assert 5 <= values["requests_per_host"] <= 6
    assert values["naive_requests_per_host"] >= 8
    assert "naive: SAMPLED 16 of 50 hosts" in stdout


def test_streamed_json_report_is_the_renderer_s_bytes(bench: tuple[str, Path]) -> None:
    # scan -f json -o writes the report host by host (render_json); it must be exactly what one
    # json.dumps of the whole report (render_json_whole, the reference) produces.
    _, path = bench
    text = path.read_text(encoding="utf-8")
    header, hosts = parse_report(text)
    assert len(hosts) == 50
    assert render_json_whole(header, hosts) == text
    out = io.StringIO()
    render_json(header, hosts, out)
    assert out.getvalue() == text
    empty = io.StringIO()
    render_json(header, MemoryHosts.of([]), empty)
    assert empty.getvalue() == render_json_whole(header, [])
