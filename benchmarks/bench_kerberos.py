"""Benchmark: the cost per host of Kerberos against NTLM, with the lab and a real Samba AD DC.

    python benchmarks/bench_kerberos.py [--hosts 200] [--concurrency 64]

Not a test: nothing here asserts a figure. Needs what tests/ad needs (root, samba-ad-dc,
krb5-user; `scripts/test` installs them). Steps: start the Samba DC (tests/peers/samba_dc.py),
register HTTP/<fqdn> for every host on one service account and serve the estate with the lab's
Kerberos acceptor (tests/peers/kerberos_lab.py), then scan it three times with the real CLI as a
child process: transport kerberos with a password, kerberos with a `kinit` cache, and ntlm. Per
run: wall time, the child's CPU (user + sys, from os.wait4) per host, the lab's CPU per host
(/proc; the lab is the acceptor: NTLM checks, GSSAPI accepts, sealing), the DC's CPU per host
(every samba process of the test DC, the KDC among them), HTTP requests per host
(from the report), and the KDC exchanges MIT krb5's own trace (KRB5_TRACE) shows: AS exchanges
per scan, TGS exchanges per host. The lab's costs are modelled delays (0 here: no latency, no WMI
delay), so the wall time is the client's and the KDC's work, not a network. The last line is
machine-readable ``key=value``. Only loopback is contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers.kerberos_lab import SCAN_PASSWORD, SCAN_USER, KerberosLab, kerberos_lab, member_names  # noqa: E402
from tests.peers.samba_dc import samba_dc_session  # noqa: E402
from tests.support.cliproc import CLI  # noqa: E402

AS_EXCHANGE = re.compile(r"Getting initial credentials for ")
TGS_EXCHANGE = re.compile(r"TGS request result: ")



def cpu_seconds(pid: int) -> float:
    """Return a process's CPU time so far (user + system), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (proc(5))


def dc_cpu_seconds() -> float:
    """Return the CPU time of every process of the DC's process group (the KDC is one of them).

    samba rewrites its processes' titles ("samba: root process"); the test DC holds the
    machine-wide DC lock, so the one root process there is is this benchmark's.
    """
    stats = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            stats[int(stat.parent.name)] = stat.read_text(encoding="ascii").rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):  # the process exited while we looked
            continue
    leaders = set()
    for pid in stats:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"samba: root process"):
                leaders.add(pid)
        except OSError:
            continue
    ticks = sum(int(f[11]) + int(f[12]) for f in stats.values() if int(f[2]) in leaders)  # pgrp, utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def run_scan(
    lab: KerberosLab, work: Path, label: str, transport: str, env: dict[str, str], hosts: int, concurrency: int
) -> dict[str, float]:
    """Scan every member host once with `transport`; return the figures of that run."""
    inventory = lab.inventory(work / f"{label}.yaml", member_names(hosts), transport)
    report = work / f"{label}.json"
    trace = work / f"{label}.trace"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("NATT_AUDIT_")}
    child_env.update(env)
    child_env.update({"PYTHONPATH": str(ROOT), "KRB5_TRACE": str(trace), "KRB5_CONFIG": str(lab.dc.krb5_conf)})
    argv = [*CLI, "scan", "-i", str(inventory), "--no-history", "-f", "json", "-o", str(report)]
    argv += ["--concurrency", str(concurrency), "-v"]  # -v: the stage timings (login, collection)
    lab_before = cpu_seconds(lab.lab.process.pid)
    dc_before = dc_cpu_seconds()
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=child_env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{label}: scan exited {proc.returncode}:\n{stderr.decode(errors='replace')}")
    data = json.loads(report.read_text(encoding="utf-8"))
    requests = sum(h["requests"] for h in data["hosts"])
    text = trace.read_text(encoding="utf-8", errors="replace") if trace.exists() else ""
    stages = dict(re.findall(r"stage (login|collect-and-evaluate): ([0-9.]+) s", stderr.decode(errors="replace")))
    return {
        "login_s": round(float(stages.get("login", "0")), 3),
        "collect_s": round(float(stages.get("collect-and-evaluate", "0")), 2),
        "wall_s": round(wall, 2),
        "cpu_ms_per_host": round((usage.ru_utime + usage.ru_stime) * 1000 / hosts, 2),
        "requests_per_host": round(requests / hosts, 2),
        "as_per_scan": len(AS_EXCHANGE.findall(text)),
        "tgs_per_host": round(len(TGS_EXCHANGE.findall(text)) / hosts, 2),
        "lab_cpu_ms_per_host": round((cpu_seconds(lab.lab.process.pid) - lab_before) * 1000 / hosts, 2),
        "dc_cpu_ms_per_host": round((dc_cpu_seconds() - dc_before) * 1000 / hosts, 2),
    }


def main() -> int:
    """Run the three scans and print their figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="natt-bench-krb-", dir="/tmp") as tmp:
        work = Path(tmp)
        with samba_dc_session(work / "dc") as dc, kerberos_lab(dc, work / "lab", count=args.hosts) as lab:
            password = {"NATT_AUDIT_USERNAME": f"LAB\\{SCAN_USER}", "NATT_AUDIT_PASSWORD": SCAN_PASSWORD}
            cache = work / "krb5cc"
            assert dc.kinit(lab.user.principal, SCAN_PASSWORD, cache).ok
            runs = {
                "kerberos_password": run_scan(lab, work, "krb-pw", "kerberos", password, args.hosts, args.concurrency),
                "kerberos_kinit": run_scan(
                    lab, work, "krb-cc", "kerberos", {"KRB5CCNAME": f"FILE:{cache}"}, args.hosts, args.concurrency
                ),
                "ntlm": run_scan(lab, work, "ntlm", "ntlm", password, args.hosts, args.concurrency),
            }
    for label, figures in runs.items():
        print(f"{label}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    line = [f"hosts={args.hosts}", f"concurrency={args.concurrency}"]
    line += [f"{label}_{k}={v}" for label, figures in runs.items() for k, v in figures.items()]
    print(" ".join(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
