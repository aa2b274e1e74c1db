"""Benchmark: resolve N computer accounts of the real Samba AD DC through the ldap source over LDAPS.

    python benchmarks/bench_ldap.py [--objects 50000] [--page-size 1000] [--batch 5000] [--load-budget 480]

Not a test: nothing here asserts a time. Steps: start the Samba AD DC of tests/peers/samba_dc.py on
loopback (root; it waits for another session's DC), load N computer objects straight into sam.ldb
with its ldbadd helper (in ldb's batch mode, 5,000 a transaction, over 50 OUs, 1 in 20 disabled:
about a minute for 50,000), then run the ldap source in a child process (simple bind over LDAPS with
the fixture's CA, page size 1,000) and measure that child: wall time of resolve() and peak RSS from
os.wait4 (the child's own, imports included). Loading stops after --load-budget seconds, because the
DC's ports are shared by every test session on the machine and those wait at most 600 s; a cut load
is said on stdout and the line reports the objects really resolved. The last line is machine-
readable: ``objects= pages= wall_s= peak_rss_mb=``. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_OU = "OU=Bench,DC=lab,DC=test"
OUS = 50
PASSWORD_ENV = "NATT_AUDIT_LDAP_PASSWORD"  # the ldap source reads the password from here, never argv


@dataclass(frozen=True)
class Measured:
    """What one resolve measured."""

    objects: int
    hosts: int
    pages: int
    wall_s: float
    peak_rss_mb: float
    load_s: float

    def line(self) -> str:
        """Return the machine-readable last line."""
        return f"objects={self.objects} pages={self.pages} wall_s={self.wall_s:.2f} peak_rss_mb={self.peak_rss_mb:.1f}"


def ldif(start: int, count: int, now: dt.datetime, with_ous: bool) -> str:
    """Return LDIF for computers start..start+count-1 (and the OUs when with_ous)."""
    from scanner.inputs.sources.ldap import filetime

    records = []
    if with_ous:
        records.append(f"dn: {BENCH_OU}\nobjectClass: organizationalUnit\n")
        records += [f"dn: OU=Site{i:02d},{BENCH_OU}\nobjectClass: organizationalUnit\n" for i in range(OUS)]
    logon = filetime(now - dt.timedelta(days=3))
    for i in range(start, start + count):
        uac = 4098 if i % 20 == 19 else 4096
        records.append(
            f"dn: CN=B{i:06d},OU=Site{i % OUS:02d},{BENCH_OU}\n"
            "objectClass: computer\n"
            f"sAMAccountName: B{i:06d}$\n"
            f"dNSHostName: b{i:06d}.lab.test\n"
            "operatingSystem: Windows 10 Enterprise\n"
            "operatingSystemVersion: 10.0 (19045)\n"
            f"userAccountControl: {uac}\n"
            f"lastLogonTimestamp: {logon}\n"
        )
    return "\n".join(records)


def load(dc: Any, objects: int, batch: int, budget: float = float("inf")) -> tuple[int, float]:
    """Add up to `objects` computers under OU=Bench (sam.ldb load); return how many and the seconds taken.

    Stops after the batch that crosses `budget` seconds: the DC's ports are shared by every test session on
    the machine, and they wait at most 600 s for it.
    """
    started = time.monotonic()
    now = dt.datetime.now(dt.UTC)
    loaded = 0
    while loaded < objects:
        count = min(batch, objects - loaded)
        dc.ldbadd(ldif(loaded, count, now, with_ous=loaded == 0))
        loaded += count
        elapsed = time.monotonic() - started
        if loaded % 10_000 == 0 or loaded == objects:
            print(f"loaded {loaded}/{objects} in {elapsed:.1f} s", flush=True)
        if elapsed > budget and loaded < objects:
            print(f"load budget of {budget:.0f} s spent: measuring {loaded} of {objects} objects", flush=True)
            break
    return loaded, time.monotonic() - started


def measure(dc: Any, objects: int, page_size: int, load_s: float) -> Measured:
    """Resolve OU=Bench through the ldap source in a child process; return what it measured."""
    config = {
        "type": "ldap", "url": dc.ldaps_url, "ca_file": str(dc.ca_path), "auth": "simple",
        "username": f"Administrator@{dc.realm}", "base": BENCH_OU, "page_size": page_size,
    }  # fmt: skip
    env = {**os.environ, PASSWORD_ENV: dc.admin_password}
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(config)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, cwd=ROOT)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.stdout.close()
    if status != 0:
        raise SystemExit(f"the resolving child failed with status {status}")
    child = json.loads(out)
    return Measured(
        objects=child["objects"],
        hosts=child["hosts"],
        pages=child["pages"],
        wall_s=child["wall_s"],
        peak_rss_mb=usage.ru_maxrss / 1024,  # Linux: kilobytes
        load_s=load_s,
    )


def child(config_json: str) -> None:
    """In the child: resolve the source and print objects, hosts, pages and wall time as JSON."""
    from scanner.inputs.sources.ldap import LdapSource, LdapSourceConfig

    source = LdapSource(LdapSourceConfig.model_validate_json(config_json))
    started = time.monotonic()
    result = source.resolve()
    wall = time.monotonic() - started
    print(json.dumps({
        "objects": result.stats["objects"], "hosts": len(result.hosts), "pages": result.stats["pages"],
        "wall_s": wall, "skipped": result.skipped,
    }))  # fmt: skip


def main() -> None:
    """Start a DC, load it, measure one resolve, print the result line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=50_000)
    parser.add_argument("--page-size", type=int, default=1000)
    # One ldbadd transaction per batch; in batch mode (tests/peers/samba_dc.py, BATCH_MODE) an object costs
    # about 1 ms whatever the directory already holds (without it, 25 ms each past 30,000).
    parser.add_argument("--batch", type=int, default=5_000, help="objects per ldbadd transaction")
    parser.add_argument("--load-budget", type=float, default=480, help="stop loading after this many seconds")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    from tests.peers.samba_dc import samba_dc_session

    with tempfile.TemporaryDirectory(prefix="bench-ldap-") as folder, samba_dc_session(Path(folder) / "dc") as dc:
        loaded, load_s = load(dc, args.objects, args.batch, args.load_budget)
        result = measure(dc, loaded, args.page_size, load_s)
    per_object = 1000 * result.load_s / max(loaded, 1)
    print(f"load_s={result.load_s:.1f} load_ms_per_object={per_object:.1f} hosts={result.hosts}")
    print(result.line())


if __name__ == "__main__":
    main()
