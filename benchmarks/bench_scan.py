"""Benchmark: natt-audit scan against the lab, then the naive pywinrm baseline on the same estate.

    python benchmarks/bench_scan.py --hosts 2000 --latency-ms 20 [--concurrency C]
                                    [--skip-naive] [--naive-sample K] [--os-mix realistic|nt6]

Not a test: nothing here asserts a time. Steps: write an estate (the lab's ``generate:`` recipes,
one per OS with the realistic OS / NAT-T mode mix of ``natt-audit lab generate``; ``--os-mix nt6``
keeps only the NT 6.0+ presets, in the same proportions), start the lab in
its own process, wait for the inventory, run ``natt-audit scan -f json`` as a child process, then
``benchmarks/naive_baseline.py`` as another child. Each child's CPU (user + sys) and peak RSS
come from ``os.wait4`` for that child only; the lab's own costs are not included. The lab's costs
(latency, WMI, shell, PowerShell start) are modelled delays (docs/lab.md), not measurements of
Windows. Requests per host: the scanner's from its report; the baseline's from the lab's request
counter (``lab serve --stats-out``, read on SIGUSR1), cross-checked with the count the baseline
makes by wrapping the requests adapter.

With ``--naive-sample K`` the baseline reads K evenly spaced hosts of the same estate and its
wall time is extrapolated linearly to all hosts (its 16 workers are the bound, so throughput is
flat); this is printed as ``naive: SAMPLED``. The last line is machine-readable ``key=value``.
Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scanner.lab.estate import OS_PRESETS  # noqa: E402
from scanner.lab.generate import MODE_MIX, OS_MIX  # noqa: E402

USERNAME = "LAB\\auditor"
PASSWORD = "Lab-Passw0rd!"  # the lab's documented test account (docs/lab.md), loopback only
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


@dataclass(frozen=True)
class ChildRun:
    """What the OS measured for one child process."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str


def estate_yaml(hosts: int, latency_ms: int, seed: int = 1, os_mix: str = "realistic") -> str:
    """Return an estate of `hosts` hosts: one recipe per OS preset, shares and modes from the generator."""
    mix = {name: share for name, share in OS_MIX.items() if os_mix != "nt6" or OS_PRESETS[name].nt >= (6, 0)}
    shares = sorted(mix.items(), key=lambda kv: -kv[1])
    total = sum(mix.values())
    counts = {name: int(hosts * share / total) for name, share in shares}
    rest = hosts - sum(counts.values())
    for name, _ in shares[:rest]:  # largest remainder, simply: give the leftovers to the big groups
        counts[name] += 1
    modes = ", ".join(f'"{mode}": {share}' for mode, share in MODE_MIX.items())
    lines = [
        f"# natt-audit benchmark estate: {hosts} hosts ({os_mix} OS mix), latency {latency_ms} ms",
        "accounts:",
        "  - {username: 'LAB\\auditor', password: 'Lab-Passw0rd!'}",
        f"defaults: {{latency_ms: {latency_ms}, wmi_ms: 5, shell_create_ms: 50, process_start_ms: 400}}",
        "hosts: []",
        "generate:",
    ]
    for n, (name, _) in enumerate(shares):
        if counts[name]:
            prefix = "h" + name.replace("-", "") + "-"
            lines.append(
                f'  - {{count: {counts[name]}, prefix: {prefix}, width: 6, os: "{name}", seed: {seed + n},'
                f' tags: {{bench: "yes"}}, mode_mix: {{{modes}}}}}'
            )
    return "\n".join(lines) + "\n"


def run_child(argv: list[str], env: dict[str, str], stdout_path: Path) -> ChildRun:
    """Run one child; return its wall time and, from wait4, its own CPU and peak RSS."""
    with stdout_path.open("wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    # Linux reports ru_maxrss in KiB.
    return ChildRun(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,
        returncode=proc.returncode,
        stdout=stdout_path.read_text(encoding="utf-8", errors="replace"),
    )


class LabProcess:
    """The lab in its own process, with its request counter readable on demand."""

    def __init__(self, estate: Path, work: Path) -> None:
        self.inventory = work / "inventory.yaml"
        self.stats = work / "lab-stats.json"
        self.stderr = work / "lab.stderr"
        argv = [
            sys.executable, "-m", "scanner.lab", "serve", str(estate),
            "--inventory-out", str(self.inventory), "--stats-out", str(self.stats),
        ]  # fmt: skip
        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )
        started = time.monotonic()
        while not self.inventory.exists():
            if self.proc.poll() is not None:
                raise SystemExit(f"lab exited early:\n{self.stderr.read_text(errors='replace')}")
            if time.monotonic() - started > 180:
                self.stop()
                raise SystemExit("lab not ready after 180 s")
            time.sleep(0.05)
        self.ready_s = time.monotonic() - started

    def requests(self) -> int:
        """Ask the lab for its counters (SIGUSR1) and return the requests served so far."""
        before = self.stats.stat().st_mtime_ns if self.stats.exists() else None
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.stats.exists() and self.stats.stat().st_mtime_ns != before:
                return int(json.loads(self.stats.read_text())["requests"])
            time.sleep(0.02)
        raise SystemExit("the lab did not write its stats")

    def stop(self) -> None:
        """Stop the lab (SIGTERM) and wait for it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures; the last line is key=value pairs."""
    parser = argparse.ArgumentParser(prog="bench_scan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=None, help="scan --concurrency (default: the scanner's)")
    parser.add_argument("--skip-naive", action="store_true", help="do not run the baseline (its figures print as nan)")
    parser.add_argument(
        "--naive-sample",
        type=int,
        default=0,
        metavar="K",
        help="run the baseline on K evenly spaced hosts and extrapolate its wall time",
    )
    parser.add_argument(
        "--scan-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for natt-audit scan, repeatable (e.g. --scan-arg=--no-history)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="copy the scan report here")
    parser.add_argument(
        "--os-mix",
        choices=["realistic", "nt6"],
        default="realistic",
        help="realistic: the generator's OS shares (1%% NT 5.x); nt6: only NT 6.0+ presets",
    )
    args = parser.parse_args(argv)
    if args.hosts < 1:
        parser.error("--hosts must be at least 1")

    need = args.hosts + 512
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, need):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))

    env = dict(os.environ, NATT_AUDIT_USERNAME=USERNAME, NATT_AUDIT_PASSWORD=PASSWORD)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(name, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"

    with tempfile.TemporaryDirectory(prefix="natt-bench-") as tmp:
        work = Path(tmp)
        # The scan's history database, lock and journal go here: never the user's, and a fresh one, so
        # every run is a first run (recorded in history, no drift to compute against an older scan).
        env["XDG_STATE_HOME"] = str(work / "state")
        estate = work / "estate.yaml"
        estate.write_text(estate_yaml(args.hosts, args.latency_ms, os_mix=args.os_mix), encoding="utf-8")
        lab = LabProcess(estate, work)
        try:
            print(f"lab: {args.hosts} hosts ready in {lab.ready_s:.1f} s, latency {args.latency_ms} ms per round trip")
            report_path = work / "report.json"
            scan_argv = [sys.executable, "-c", "from scanner.cli.main import entry_point; entry_point()",
                         "scan", "-i", str(lab.inventory), "-f", "json", "-o", str(report_path)]  # fmt: skip
            if args.concurrency is not None:
                scan_argv += ["--concurrency", str(args.concurrency)]
            scan_argv += args.scan_arg
            lab_before = lab.requests()
            scan = run_child(scan_argv, env, work / "scan.stdout")
            scan_lab_requests = lab.requests() - lab_before
            if not report_path.exists():
                raise SystemExit(f"scan wrote no report (exit {scan.returncode})")
            report = json.loads(report_path.read_text(encoding="utf-8"))
            if args.keep is not None:
                args.keep.write_bytes(report_path.read_bytes())
            hosts_out = report["hosts"]
            read_ok = sum(1 for h in hosts_out if not h.get("error"))
            requests_total = sum(int(h["requests"]) for h in hosts_out)
            n = args.hosts
            wall, cpu_ms = scan.wall_s, scan.cpu_s * 1000 / n
            req_per_host = requests_total / n
            print(
                f"scan: exit {scan.returncode}; {len(hosts_out)} hosts in report, {read_ok} read, {n - read_ok} errors"
            )
            print(f"scan: wall {wall:.2f} s = {n / wall:.0f} hosts/s = {3600 * n / wall:,.0f} hosts/hour")
            print(f"scan: CPU {scan.cpu_s:.2f} s = {cpu_ms:.2f} ms/host (the scanner process only, from wait4)")
            print(f"scan: peak RSS {scan.peak_rss_mb:.1f} MB")
            print(
                f"scan: {req_per_host:.2f} requests/host from the report; the lab served "
                f"{scan_lab_requests / n:.2f}/host"
            )

            naive_wall = naive_cpu = naive_req = float("nan")
            if not args.skip_naive:
                sample = args.naive_sample if 0 < args.naive_sample < n else n
                naive_argv = [sys.executable, str(ROOT / "benchmarks" / "naive_baseline.py"), str(lab.inventory),
                              "--workers", "16"]  # fmt: skip
                if sample < n:
                    naive_argv += ["--sample", str(sample)]
                lab_before = lab.requests()
                naive = run_child(naive_argv, env, work / "naive.stdout")
                naive_lab_requests = lab.requests() - lab_before
                summary = json.loads(naive.stdout.strip().splitlines()[-1])
                naive_cpu = naive.cpu_s * 1000 / sample
                naive_req = naive_lab_requests / sample
                naive_wall = naive.wall_s * n / sample
                print(
                    f"naive: pywinrm Session.run_ps, one session per host, 16 workers: {sample} hosts, "
                    f"{summary['ok']} read, {summary['errors']} errors; exit {naive.returncode}"
                )
                if sample < n:
                    print(
                        f"naive: SAMPLED {sample} of {n} hosts; measured wall {naive.wall_s:.1f} s, "
                        f"extrapolated x{n / sample:.1f} to {naive_wall:.1f} s (CPU, RSS, requests per host "
                        "as measured on the sample)"
                    )
                else:
                    print(f"naive: wall {naive_wall:.1f} s = {n / naive_wall:.1f} hosts/s")
                print(f"naive: CPU {naive.cpu_s:.2f} s = {naive_cpu:.2f} ms/host; peak RSS {naive.peak_rss_mb:.1f} MB")
                print(
                    f"naive: {naive_req:.2f} requests/host counted by the lab "
                    f"({summary['requests'] / sample:.2f} counted in the client)"
                )
        finally:
            lab.stop()

    speedup = naive_wall / wall
    values = {
        "hosts": str(args.hosts),
        "latency_ms": str(args.latency_ms),
        "wall_s": f"{wall:.2f}",
        "hosts_per_s": f"{args.hosts / wall:.1f}",
        "cpu_ms_per_host": f"{cpu_ms:.2f}",
        "requests_per_host": f"{req_per_host:.2f}",
        "peak_rss_mb": f"{scan.peak_rss_mb:.1f}",
        "naive_wall_s": f"{naive_wall:.2f}",
        "naive_cpu_ms_per_host": f"{naive_cpu:.2f}",
        "naive_requests_per_host": f"{naive_req:.2f}",
        "speedup": f"{speedup:.1f}",
    }
    assert list(values) == KEYS
    print(" ".join(f"{key}={values[key]}" for key in KEYS), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
