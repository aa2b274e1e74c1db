"""Helpers of the sites engine tests: per-site estates and inventories, and worker processes."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import yaml

from scanner.lab.generate import generate_estate
from tests.support.cliproc import CLI, REPO, cli_env


def write_estate(path: Path, *, prefix: str, count: int, username: str, password: str, latency_ms: int = 0) -> Path:
    """Write a generated estate of `count` hosts whose one account is username/password."""
    text = generate_estate(count, 7, prefix, latency_ms)
    lines = text.splitlines()
    start = lines.index("accounts:")
    account = json.dumps({"username": username, "password": password})
    lines[start + 1] = f"  - {account}"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def site_inventory(path: Path, sites: Mapping[str, Path | list[dict[str, object]]]) -> Path:
    """Write one inventory of every host of each site's lab inventory (or host list), each with its site."""
    hosts: list[dict[str, object]] = []
    for site, source in sites.items():
        listed = yaml.safe_load(source.read_text(encoding="utf-8"))["hosts"] if isinstance(source, Path) else source
        hosts += [{**host, "site": site} for host in listed]
    path.write_text(yaml.safe_dump({"hosts": hosts}), encoding="utf-8")
    return path


def lab_hosts(inventory: Path) -> list[dict[str, object]]:
    """Return the host entries of a lab's inventory."""
    return list(yaml.safe_load(inventory.read_text(encoding="utf-8"))["hosts"])


@contextlib.contextmanager
def worker(
    broker_url: str,
    site: str,
    env: Mapping[str, str],
    log: Path,
    *,
    prefix: Sequence[str] = (),
    args: Sequence[str] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `natt-audit worker` for `site` until the with-block ends (SIGTERM, then SIGKILL)."""
    with log.open("ab") as err:
        process = subprocess.Popen(
            [*prefix, *CLI, "worker", "--broker", broker_url, "--site", site, *args],
            env=cli_env(env),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def report_hosts(report: Path) -> dict[str, dict[str, object]]:
    """Return a JSON report's hosts by name, asserting that no name appears twice."""
    doc = json.loads(report.read_text(encoding="utf-8"))
    names = [host["name"] for host in doc["hosts"]]
    assert len(names) == len(set(names)), "a host appears more than once in the report"
    return {host["name"]: host for host in doc["hosts"]}
