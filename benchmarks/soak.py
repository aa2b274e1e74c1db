"""Soak: 10,000 lab hosts, about 5 % of them in each fault mode, scanned by the real CLI (docs/reliability.md).

Asserts one terminal record per host, flat memory and open-file count across the run (sampled
from /proc of the scanner process), no leaked threads once collection ends, and completion within
the deadline; prints its figures. Not a unit test:

    python benchmarks/soak.py [--hosts 10000] [--share 0.05] [--host-timeout 3] [--concurrency 256]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.peers.lab import start_lab  # noqa: E402

FAULTS = (
    "refuse",
    "blackhole",
    "trickle",
    "auth-reject",
    "wmi-access-denied",
    "soap-fault:2150858793",
    "quota",
    "http-502-html",
    "reset",
    "malformed-xml",
    "xml-bomb",
    "oversize",
    "wrong-relatesto",
    "slow:200",
)
# fault -> the (stage, reason) the scanner must report; slow hosts are read normally.
EXPECTED = {
    "refuse": ("connect", "refused"),
    "blackhole": ("timeout", "deadline"),
    "trickle": ("timeout", "deadline"),
    "auth-reject": ("auth", "unauthorized"),
    "wmi-access-denied": ("collect", "access_denied"),
    "soap-fault:2150858793": ("collect", "operation_timeout"),
    "quota": ("collect", "quota"),
    "http-502-html": ("collect", "http_502"),
    "reset": ("connect", "reset"),
    "malformed-xml": ("parse", "malformed_xml"),
    "xml-bomb": ("parse", "xml_forbidden"),
    "oversize": ("parse", "oversize"),
    "wrong-relatesto": ("parse", "relates_to"),
    "slow:200": None,
    None: None,
}


@dataclass
class Sample:
    """One look at the scanner process."""

    t: float
    rss_kb: int
    fds: int
    threads: int


def sample(pid: int, started: float) -> Sample | None:
    """Read RSS, thread count and open fds of `pid` from /proc; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "VmRSS" not in fields:
        return None  # a zombie
    return Sample(time.monotonic() - started, int(fields["VmRSS"].split()[0]), fds, int(fields["Threads"]))


def estate(hosts: int, share: float) -> str:
    """Return the soak estate: one generate recipe, `share` of hosts per fault mode."""
    mix = ", ".join(f'"{fault}": {share}' for fault in FAULTS)
    return (
        "accounts:\n  - {username: 'LAB\\auditor', password: 'Lab-Passw0rd!'}\n"
        "defaults: {wmi_ms: 0, latency_ms: 0}\n"
        "generate:\n"
        f"  - {{count: {hosts}, prefix: soak-, width: 5, os: win11, seed: 8, "
        f'mode_mix: {{absent: 0.6, "0": 0.2, "1": 0.1, "2": 0.1}}, fault_mix: {{{mix}}}}}\n'
    )


def main() -> int:
    """Run the soak and print its figures; exit 1 if an assertion fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--share", type=float, default=0.05)
    parser.add_argument("--host-timeout", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--deadline", type=float, default=900.0, help="the whole scan must end within this")
    args = parser.parse_args()

    from scanner.lab.estate import load_estate

    work = Path(tempfile.mkdtemp(prefix="natt-soak-"))
    estate_path = work / "estate.yaml"
    estate_path.write_text(estate(args.hosts, args.share), encoding="utf-8")
    faults: dict[str, str | None] = {
        h.name: (None if h.fault is None else h.fault.kind + (f":{h.fault.arg}" if h.fault.arg else ""))
        for h in load_estate(estate_path).resolved()
    }
    counts: dict[str, int] = {}
    for fault in faults.values():
        counts[fault or "none"] = counts.get(fault or "none", 0) + 1
    print(f"estate: {len(faults)} hosts; per fault: {json.dumps(counts, sort_keys=True)}")

    failures: list[str] = []
    t_lab = time.monotonic()
    with start_lab(estate_path, work / "lab", timeout=120) as lab:
        print(f"lab ready in {time.monotonic() - t_lab:.1f}s")
        out = work / "report.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("NATT_AUDIT_")}
        env.update(
            NATT_AUDIT_USERNAME="LAB\\auditor",
            NATT_AUDIT_PASSWORD="Lab-Passw0rd!",
            XDG_STATE_HOME=str(work / "state"),
            PYTHONPATH=str(REPO),
        )
        argv = [
            sys.executable,
            "-c",
            "from scanner.cli.main import entry_point; entry_point()",
            "scan",
            "-i",
            str(lab.inventory),
            "-f",
            "json",
            "--host-timeout",
            str(args.host_timeout),
            "--connect-timeout",
            "2",
            "--concurrency",
            str(args.concurrency),
            "--min-coverage",
            "0",
        ]
        # The JSON report goes to a pipe we do not read while sampling: a 10,000-host report is far
        # bigger than the pipe buffer, so the scanner blocks in its first write once collection is
        # over, and we sample it there (threads and fds must be back to the start-up level).
        started = time.monotonic()
        with (work / "stderr").open("wb") as err:
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=err, cwd=work)
        samples: list[Sample] = []
        after_collect: Sample | None = None
        still = 0
        while proc.poll() is None:
            s = sample(proc.pid, started)
            if s is None:
                break
            samples.append(s)
            wchan = Path(f"/proc/{proc.pid}/wchan").read_text(errors="replace")
            if "pipe" in wchan and s.threads <= 4:
                still += 1
                if still >= 3:
                    after_collect = s  # blocked writing the report to the pipe: collection is over
                    break
            if time.monotonic() - started > args.deadline:
                proc.kill()
                failures.append(f"scan did not finish within {args.deadline:.0f}s")
                break
            time.sleep(0.25)
        out.write_bytes(proc.communicate()[0])
        stderr = (work / "stderr").read_text(errors="replace")
        elapsed = time.monotonic() - started

    if not out.exists():
        print(stderr[-2000:])
        print("FAIL: no report")
        return 1
    report = json.loads(out.read_text(encoding="utf-8"))
    hosts = report["hosts"]
    names = [h["name"] for h in hosts]
    # One terminal record per host, and the reason its fault implies.
    if sorted(names) != sorted(faults) or len(names) != len(set(names)):
        failures.append(f"records: {len(names)} for {len(faults)} hosts (unique {len(set(names))})")
    wrong: dict[str, int] = {}
    for h in hosts:
        expected = EXPECTED[faults.get(h["name"])]
        got = (h["error"]["stage"], h["error"]["reason"]) if h["error"] else None
        if h["status"] not in ("pass", "fail", "error", "waived", "not_applicable") or got != expected:
            key = f"{faults.get(h['name'])}: {got}"
            wrong[key] = wrong.get(key, 0) + 1
    if wrong:
        failures.append(f"unexpected outcomes: {json.dumps(wrong, sort_keys=True)}")

    # Flat memory / fds: compare the last quarter of the collection with its first quarter.
    during = [s for s in samples if s.threads > 4] or samples  # workers running
    q = max(1, len(during) // 4)
    first, last = during[:q], during[-q:]
    rss_first = statistics.median(s.rss_kb for s in first) / 1024
    rss_last = statistics.median(s.rss_kb for s in last) / 1024
    rss_peak = max(s.rss_kb for s in samples) / 1024
    fd_first = max(s.fds for s in first)
    fd_last = max(s.fds for s in last)
    fd_peak = max(s.fds for s in samples)
    threads_peak = max(s.threads for s in samples)
    threads_end = after_collect.threads if after_collect else -1
    fds_end = after_collect.fds if after_collect else -1
    by_status = report["summary"]["hosts_by_status"]

    print(
        f"scan: {len(hosts)} records in {elapsed:.1f}s (deadline {args.deadline:.0f}s); "
        f"{len(hosts) / elapsed:.0f} hosts/s; concurrency {args.concurrency}, host timeout {args.host_timeout}s"
    )
    print(f"status: {json.dumps(by_status, sort_keys=True)}; coverage {report['summary']['coverage']}")
    print(f"rss MB: first quarter {rss_first:.1f}, last quarter {rss_last:.1f}, peak {rss_peak:.1f}")
    print(
        f"open fds: first quarter max {fd_first}, last quarter max {fd_last}, peak {fd_peak}, "
        f"after collection {fds_end}"
    )
    print(f"threads: peak {threads_peak}, after collection {threads_end}; samples {len(samples)}")

    if rss_last - rss_first > 64:
        failures.append(f"memory grew {rss_last - rss_first:.1f} MB across the run")
    if fd_peak > args.concurrency + 64 or fd_last > fd_first + 64:
        failures.append(f"open files not flat: first {fd_first}, last {fd_last}, peak {fd_peak}")
    if threads_peak > args.concurrency + 16:
        failures.append(f"thread peak {threads_peak} above concurrency + 16")
    if after_collect is None or threads_end > 4:
        failures.append(f"threads left after collection: {threads_end}")
    if after_collect is not None and fds_end > fd_first:
        failures.append(f"fds left open after collection: {fds_end} (first quarter {fd_first})")
    if elapsed > args.deadline:
        failures.append(f"took {elapsed:.0f}s, over the {args.deadline:.0f}s deadline")
    if proc.returncode not in (0, 1, 3):
        failures.append(f"exit code {proc.returncode}: {stderr[-500:]}")
    for failure in failures:
        print(f"FAIL: {failure}")
    print("soak: OK" if not failures else "soak: FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
