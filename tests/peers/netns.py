"""Network namespaces for segmented sites: each site's lab and worker live in their own namespace.

Each namespace gets its loopback up and one veth pair to the root namespace, addressed from the
RFC 2544 benchmarking range 198.18.0.0/15 (a /30 per namespace), which never leaves the machine.
Only the broker listens on the root side; a lab inside a namespace binds that namespace's own
loopback, which nothing outside it can reach. Everything is removed when the with-block ends.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Namespace:
    """One namespace: its name, the root side's address (the broker's) and its own address."""

    name: str
    root_address: str
    address: str

    def prefix(self) -> list[str]:
        """Return the command prefix that runs a program inside this namespace."""
        return ["ip", "netns", "exec", self.name]

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and return its output."""
        return subprocess.run([*self.prefix(), *argv], capture_output=True, text=True, timeout=30, check=False)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def netns_available() -> str | None:
    """Return why namespaces cannot be made here, or None when `ip netns add` works."""
    probe = f"natt-probe-{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        return done.stderr.strip() or f"ip netns add exited {done.returncode}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30, check=False)
    return None


@contextlib.contextmanager
def namespaces(names: Sequence[str]) -> Iterator[list[Namespace]]:
    """Create one namespace per name, each joined to the root namespace by its own veth pair."""
    token = f"{os.getpid() % 10000:04d}{random.randrange(100):02d}"
    third = random.randrange(256)
    made: list[Namespace] = []
    links: list[str] = []
    try:
        for index, label in enumerate(names):
            ns = f"natt-{label}-{token}"
            host_if = f"nv{token}{index}"  # interface names are at most 15 characters
            peer_if = f"np{token}{index}"
            base = index * 4
            root_address, address = f"198.18.{third}.{base + 1}", f"198.18.{third}.{base + 2}"
            _ip("netns", "add", ns)
            made.append(Namespace(ns, root_address, address))
            _ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
            links.append(host_if)
            _ip("link", "set", peer_if, "netns", ns)
            _ip("addr", "add", f"{root_address}/30", "dev", host_if)
            _ip("link", "set", host_if, "up")
            _ip("-n", ns, "addr", "add", f"{address}/30", "dev", peer_if)
            _ip("-n", ns, "link", "set", peer_if, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield made
    finally:
        for link in links:
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=30, check=False)
        for namespace in made:
            subprocess.run(["ip", "netns", "del", namespace.name], capture_output=True, timeout=30, check=False)
