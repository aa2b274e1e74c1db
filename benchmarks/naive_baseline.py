"""The baseline natt-audit is measured against: a hand-written pywinrm ``Session.run_ps`` loop.

This is the shape of Ansible's ``win_reg_stat`` and of the usual hand-written script: one
``winrm.Session`` per host (NTLM, message encryption on HTTP), one PowerShell command reading the
value, 16 hosts in flight. It exists only for ``benchmarks/bench_scan.py``, which runs it as its
own process so the OS measures its CPU and memory separately from the scanner's.

Usage: ``python benchmarks/naive_baseline.py INVENTORY.yaml [--workers 16] [--sample K]``, with the
account in NATT_AUDIT_USERNAME / NATT_AUDIT_PASSWORD. Only loopback addresses are contacted.
Prints one JSON object: hosts, ok, errors, requests (counted by wrapping the requests adapter's
``send``, so every HTTP request pywinrm makes is counted, handshake legs included), wall_s.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests.adapters
import winrm

from scanner.inputs.inventory import load_inventory

SCRIPT = (
    "(Get-ItemProperty -Path 'HKLM:\\SYSTEM\\CurrentControlSet\\Services\\PolicyAgent' "
    "-Name AssumeUDPEncapsulationContextOnSendRule).AssumeUDPEncapsulationContextOnSendRule"
)

_count_lock = threading.Lock()
_requests = 0
_original_send = requests.adapters.HTTPAdapter.send


def _counting_send(self: requests.adapters.HTTPAdapter, request: Any, *args: Any, **kwargs: Any) -> Any:
    """Count one HTTP request, then send it as requests would."""
    global _requests
    with _count_lock:
        _requests += 1
    return _original_send(self, request, *args, **kwargs)


def _hosts(inventory: Path) -> list[tuple[str, str, int]]:
    """Return (name, address, port) of every inventory host; refuse anything but loopback."""
    out = []
    for target in load_inventory(inventory).targets:
        try:
            loopback = ipaddress.ip_address(target.address).is_loopback
        except ValueError:  # a name: never resolved here, the baseline only reads lab hosts
            loopback = False
        if not loopback:
            raise SystemExit(f"naive_baseline: refusing non-loopback address {target.address!r}")
        out.append((target.name, target.address, target.port))
    return out


def _read_one(address: str, port: int, username: str, password: str) -> bool:
    """Read the value the way a hand-written script does; True when PowerShell exited 0."""
    session = winrm.Session(
        f"http://{address}:{port}/wsman",
        auth=(username, password),
        transport="ntlm",
        server_cert_validation="ignore",
        proxy=None,  # never take a proxy from the environment: loopback only
        operation_timeout_sec=20,
        read_timeout_sec=30,
    )
    try:
        result = session.run_ps(SCRIPT)
    except Exception:  # noqa: BLE001 - a baseline: any failure is one failed host, counted below
        return False
    return result.status_code in (0, 1)  # 1: value absent (PowerShell error on stderr), still read


def main(argv: list[str] | None = None) -> int:
    """Read every host (or an evenly spaced sample) with 16 workers; print one JSON line."""
    parser = argparse.ArgumentParser(prog="naive_baseline")
    parser.add_argument("inventory", type=Path)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--sample", type=int, default=0, help="read only K evenly spaced hosts (0: all)")
    args = parser.parse_args(argv)
    username = os.environ["NATT_AUDIT_USERNAME"]
    password = os.environ["NATT_AUDIT_PASSWORD"]
    hosts = _hosts(args.inventory)
    if 0 < args.sample < len(hosts):
        step = len(hosts) / args.sample
        hosts = [hosts[int(i * step)] for i in range(args.sample)]
    requests.adapters.HTTPAdapter.send = _counting_send  # type: ignore[method-assign]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(lambda h: _read_one(h[1], h[2], username, password), hosts))
    wall = time.monotonic() - started
    ok = sum(results)
    out = {"hosts": len(hosts), "ok": ok, "errors": len(hosts) - ok, "requests": _requests, "wall_s": wall}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
