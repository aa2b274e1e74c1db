"""Benchmark: one estate scanned locally, then through the sites engine (Celery + Redis).

    python benchmarks/bench_sites.py --hosts 2000 --sites 2 [--workers-per-site 1] [--latency-ms 0]

Not a test: nothing here asserts a time. Starts a redis-server with a password on a free loopback
port and the lab with `--hosts` generated hosts (one process), splits the hosts evenly over
`--sites` sites, runs `natt-audit scan` locally (one process, the default concurrency), then starts
`--workers-per-site` workers per site and runs `natt-audit scan --broker` with -v JSON logs.

- coordinator_cpu_ms_per_host: the CPU the coordinator's collect thread spent on the engine's
  own work (sending batches, polling, decoding and validating results), without evaluation,
  journal and report (the same work as a local scan), from the engine's debug record;
- broker_msgs_per_host: messages the broker carried during the distributed scan, from Redis
  INFO commandstats: task messages (LPUSH) + result-backend writes (SET/SETEX, each also
  PUBLISHed) + broadcasts (the other PUBLISHes: revokes, inspect), divided by hosts.

The last line is machine-readable key=value. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers.lab import start_lab  # noqa: E402
from tests.peers.redis_server import RunningRedis, start_redis  # noqa: E402
from tests.support.cliproc import CLI, REPO, cli_env  # noqa: E402
from tests.support.sites import lab_hosts, site_inventory, worker, write_estate  # noqa: E402

USERNAME = "LAB\\auditor"
PASSWORD = "Lab-Passw0rd!"  # the lab's documented test account (docs/lab.md), loopback only


def _commandstats(redis: RunningRedis) -> dict[str, int]:
    stats: dict[str, int] = {}
    for line in redis.cli("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            calls = dict(part.split("=") for part in rest.split(","))
            stats[name.removeprefix("cmdstat_")] = int(calls["calls"])
    return stats


def _scan(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    started = time.perf_counter()
    done = subprocess.run([*CLI, *args], env=cli_env(env), cwd=REPO, capture_output=True, timeout=3600, check=False)
    return time.perf_counter() - started, done


def _wait_for_workers(redis: RunningRedis, env: dict[str, str], sites: int, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = subprocess.run(
            [*CLI, "workers", "--broker", redis.url(), "-f", "json"],
            env=cli_env(env),
            cwd=REPO,
            capture_output=True,
            timeout=60,
            check=False,
        )
        if done.returncode == 0:
            listed = json.loads(done.stdout)["sites"]
            if len(listed) == sites and sum(len(w) for w in listed.values()) == count:
                return
        time.sleep(0.5)
    raise TimeoutError("the workers did not come up")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--workers-per-site", type=int, default=1)
    parser.add_argument("--latency-ms", type=int, default=0)
    args = parser.parse_args()
    creds = {"NATT_AUDIT_USERNAME": USERNAME, "NATT_AUDIT_PASSWORD": PASSWORD}
    with tempfile.TemporaryDirectory(prefix="bench-sites-") as temp, ExitStack() as stack:
        work = Path(temp)
        estate = write_estate(
            work / "estate.yaml",
            prefix="b-",
            count=args.hosts,
            username=USERNAME,
            password=PASSWORD,
            latency_ms=args.latency_ms,
        )
        redis = stack.enter_context(start_redis(work / "redis"))
        lab = stack.enter_context(start_lab(estate, work / "lab", timeout=300))
        hosts = lab_hosts(lab.inventory)
        per = -(-len(hosts) // args.sites)
        names = [f"site{n}" for n in range(args.sites)]
        inventory = site_inventory(work / "inv.yaml", {s: hosts[i * per : (i + 1) * per] for i, s in enumerate(names)})
        common = ["scan", "-i", str(inventory), "--no-history", "-f", "json"]

        local_wall, local = _scan([*common, "-o", str(work / "local.json")], creds)
        print(f"local: {local_wall:.2f} s, exit {local.returncode}", file=sys.stderr)

        broker_env = {"NATT_AUDIT_BROKER_PASSWORD": redis.password}
        for site in names:
            for n in range(args.workers_per_site):
                stack.enter_context(worker(redis.url(), site, {**creds, **broker_env}, work / f"{site}-{n}.log"))
        _wait_for_workers(redis, broker_env, args.sites, args.sites * args.workers_per_site)
        before = _commandstats(redis)
        wall, dist = _scan(
            ["-v", "--log-format", "json", *common, "--broker", redis.url(), "-o", str(work / "dist.json")], broker_env
        )
        after = _commandstats(redis)
        print(f"distributed: {wall:.2f} s, exit {dist.returncode}", file=sys.stderr)
        engine: dict[str, float] = {}
        for line in dist.stderr.decode().splitlines():
            record = json.loads(line)
            if "sites_engine" in record.get("fields", {}):
                engine = record["fields"]["sites_engine"]
        if not engine:
            print(dist.stderr.decode()[-2000:], file=sys.stderr)
            return 1
        delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
        stores = delta.get("setex", 0) + delta.get("set", 0)
        broadcasts = max(0, delta.get("publish", 0) - stores)
        messages = delta.get("lpush", 0) + stores + broadcasts
        report = json.loads((work / "dist.json").read_text())
        local_report = json.loads((work / "local.json").read_text())
        same = report["hosts"] == local_report["hosts"] and report["summary"] == local_report["summary"]
        print(
            f"engine: {json.dumps(engine)}; broker commands: { {k: v for k, v in delta.items() if v} }; "
            f"report equals local: {same}",
            file=sys.stderr,
        )
        hosts_n = len(hosts)
        print(
            f"hosts={hosts_n} sites={args.sites} workers={args.sites * args.workers_per_site} wall_s={wall:.2f} "
            f"local_wall_s={local_wall:.2f} coordinator_cpu_ms_per_host={engine['cpu_seconds'] * 1000 / hosts_n:.3f} "
            f"broker_msgs_per_host={messages / hosts_n:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
