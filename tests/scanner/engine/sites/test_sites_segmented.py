"""Two segmented sites, for real: each site's lab and worker in its own network namespace.

docs/sites.md#architecture: the coordinator (root namespace, no host account) reaches only the
broker; each site's worker reaches the broker over a veth pair and its own site's hosts, with that
site's own account. The labs listen on their namespace's loopback, so nothing outside reaches them.
CI runs as root, so `ip netns add` works; the test fails (never skips) where it does not.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests.peers.lab import start_lab
from tests.peers.netns import namespaces, netns_available
from tests.peers.redis_server import start_redis
from tests.support.cliproc import run_cli
from tests.support.sites import lab_hosts, report_hosts, site_inventory, worker, write_estate

pytestmark = pytest.mark.slow

ACCOUNTS = {
    "paris": ("PARIS\\svc-audit", "Paris-Only-Passw0rd!"),
    "tokyo": ("TOKYO\\svc-audit", "Tokyo-Only-Passw0rd!"),
}
LOOPBACK = {"paris": "127.0.1.1", "tokyo": "127.0.2.1"}  # distinct, so one inventory holds both sites


def _unreachable(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return False
    except OSError:
        return True


def _wait_for_sites(url: str, env: dict[str, str], sites: set[str]) -> dict[str, list[str]]:
    """Ask `natt-audit workers` until a worker of every site answers (they start in parallel)."""
    deadline = time.monotonic() + 60
    listed: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        done = run_cli("workers", "--broker", url, "-f", "json", "--timeout", "1", env=env)
        listed = json.loads(done.stdout)["sites"] if done.stdout else {}
        if set(listed) >= sites:
            return listed
        time.sleep(0.5)
    return listed


def test_two_namespaced_sites_with_their_own_accounts(tmp_path: Path) -> None:
    assert netns_available() is None, f"ip netns add is not permitted here: {netns_available()}"
    with namespaces(list(ACCOUNTS)) as (paris, tokyo):
        spaces = {"paris": paris, "tokyo": tokyo}
        binds = ("127.0.0.1", paris.root_address, tokyo.root_address)
        with (
            start_redis(tmp_path / "redis", binds=binds) as redis,
            start_lab(
                write_estate(
                    tmp_path / "paris.yaml",
                    prefix="par-",
                    count=60,
                    username=ACCOUNTS["paris"][0],
                    password=ACCOUNTS["paris"][1],
                ),
                tmp_path / "lab-paris",
                extra_args=["--bind", LOOPBACK["paris"]],
                prefix=paris.prefix(),
            ) as lab_paris,
            start_lab(
                write_estate(
                    tmp_path / "tokyo.yaml",
                    prefix="tok-",
                    count=60,
                    username=ACCOUNTS["tokyo"][0],
                    password=ACCOUNTS["tokyo"][1],
                ),
                tmp_path / "lab-tokyo",
                extra_args=["--bind", LOOPBACK["tokyo"]],
                prefix=tokyo.prefix(),
            ) as lab_tokyo,
        ):
            labs = {"paris": lab_paris, "tokyo": lab_tokyo}
            # Segmented: from the coordinator's namespace no lab host answers, and neither site's
            # namespace reaches the other's hosts.
            for lab in labs.values():
                assert all(_unreachable(address, port) for address, port, _ in lab.hosts.values())
            some_tokyo = next(iter(lab_tokyo.hosts.values()))
            probe = paris.run(
                "python3", "-c", f"import socket; socket.create_connection(('{some_tokyo[0]}', {some_tokyo[1]}), 1)"
            )
            assert probe.returncode != 0
            inventory = site_inventory(tmp_path / "inv.yaml", {site: lab.inventory for site, lab in labs.items()})
            broker_env = {"NATT_AUDIT_BROKER_PASSWORD": redis.password}
            workers = []
            for site, space in spaces.items():
                user, password = ACCOUNTS[site]
                creds = {"NATT_AUDIT_USERNAME": user, "NATT_AUDIT_PASSWORD": password, **broker_env}
                workers.append(
                    worker(
                        redis.url(host=space.root_address), site, creds, tmp_path / f"{site}.log", prefix=space.prefix()
                    )
                )
            with workers[0], workers[1]:
                listed = _wait_for_sites(redis.url(), broker_env, {"paris", "tokyo"})
                done = run_cli(
                    "scan",
                    "-i",
                    str(inventory),
                    "--broker",
                    redis.url(),
                    "--no-history",
                    "-f",
                    "json",
                    "-o",
                    str(tmp_path / "r.json"),
                    env=broker_env,
                    timeout=180,
                )
    assert done.returncode in (0, 1), done.stderr
    assert set(listed) == {"paris", "tokyo"}
    hosts = report_hosts(tmp_path / "r.json")
    expected = {str(h["name"]) for lab in labs.values() for h in lab_hosts(lab.inventory)}
    assert set(hosts) == expected and len(hosts) == 120
    assert all(host["error"] is None for host in hosts.values())
    sites = json.loads((tmp_path / "r.json").read_text())["summary"]["sites"]
    assert sites == {site: {"hosts": 60, "read": 60, "coverage": 1.0} for site in ACCOUNTS}
    for _user, password in ACCOUNTS.values():
        assert password not in done.stdout + done.stderr + (tmp_path / "r.json").read_text()
