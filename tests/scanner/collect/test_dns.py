"""docs/reliability.md#name-resolution: an unresolvable name, or a hanging resolver, is `dns` within the deadline.

No real resolver is ever asked: the scanner runs in its own mount namespace (`unshare --mount`, we
are root in this container) where /etc/resolv.conf is bind-mounted to a file naming a local UDP
server on 127.0.0.77:53. That server answers NXDOMAIN for names starting with "nx" and never
answers anything else (a hung resolver). Names are under `.invalid` (RFC 6761) in any case.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.hostile_lab import CREDS
from tests.support.cliproc import natt_audit

DNS_ADDRESS = "127.0.0.77"
HOST_TIMEOUT = 1.0
HANGING = ["hang-1.invalid", "hang-2.invalid", "hang-3.invalid"]


def _qname(packet: bytes) -> str:
    labels, i = [], 12
    while i < len(packet) and packet[i]:
        n = packet[i]
        labels.append(packet[i + 1 : i + 1 + n].decode("ascii", "replace"))
        i += n + 1
    return ".".join(labels)


class LocalDns:
    """A loopback DNS server: NXDOMAIN for `nx*` names, silence for everything else."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((DNS_ADDRESS, 53))
        self.sock.settimeout(0.2)
        self.queries: list[str] = []
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                packet, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            name = _qname(packet)
            self.queries.append(name)
            if name.startswith("nx"):
                # Same ID and question; QR=1, RD, RA, RCODE=3 (NXDOMAIN); no answers.
                header = packet[:2] + struct.pack(">HHHHH", 0x8183, 1, 0, 0, 0)
                self.sock.sendto(header + packet[12:], peer)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture(scope="module")
def dns() -> Iterator[LocalDns]:
    server = LocalDns()
    try:
        yield server
    finally:
        server.close()


def _scan_in_namespace(tmp_path: Path, names: list[str], concurrency: int) -> tuple[dict[str, dict], float]:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {DNS_ADDRESS}\noptions timeout:30 attempts:1\n", encoding="utf-8")
    inventory = tmp_path / "hosts.txt"
    inventory.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    out = tmp_path / "r.json"
    prefix = ["unshare", "--mount", "sh", "-c", f'mount --bind "{resolv}" /etc/resolv.conf && exec "$@"', "sh"]
    started = time.monotonic()
    proc = natt_audit(
        "scan",
        "-i",
        str(inventory),
        "-f",
        "json",
        "-o",
        str(out),
        "--host-timeout",
        str(HOST_TIMEOUT),
        "--concurrency",
        str(concurrency),
        env=CREDS,
        prefix=prefix,
    )
    elapsed = time.monotonic() - started
    assert out.exists(), proc.stderr.decode(errors="replace")
    report = json.loads(out.read_text(encoding="utf-8"))
    return {h["name"]: h for h in report["hosts"]}, elapsed


def test_nxdomain_is_dns_error_fast(tmp_path: Path, dns: LocalDns) -> None:
    hosts, elapsed = _scan_in_namespace(tmp_path, ["nx-nothing.invalid"], 1)
    error = hosts["nx-nothing.invalid"]["error"]
    assert (error["stage"], error["reason"]) == ("connect", "dns")
    assert "did not resolve" in error["message"]
    assert "nx-nothing.invalid" in dns.queries  # asked our loopback server, nobody else
    assert elapsed < 10


def test_hanging_resolver_ends_at_the_deadline_and_frees_the_worker(tmp_path: Path, dns: LocalDns) -> None:
    # Concurrency 1: if a hung lookup kept its worker, the second host would never start.
    hosts, elapsed = _scan_in_namespace(tmp_path, HANGING, 1)
    assert sorted(hosts) == sorted(HANGING)
    for name in HANGING:
        error = hosts[name]["error"]
        assert (error["stage"], error["reason"]) == ("connect", "dns"), error
        assert "before the deadline" in error["message"]
    assert set(HANGING) <= set(dns.queries)
    # ~3 x 1 s of deadlines plus interpreter start-up; a resolver timeout (30 s) would blow this.
    assert len(HANGING) * HOST_TIMEOUT <= elapsed < len(HANGING) * HOST_TIMEOUT + 6, elapsed
