"""A worker stops on SIGTERM or Ctrl-C with nothing on stdout: its words go through the logger to stderr."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.peers.redis_server import RunningRedis
from tests.scanner.engine.sites.conftest import Estate, broker_env
from tests.support.cliproc import CLI, REPO, cli_env, run_cli

pytestmark = pytest.mark.slow


def _ready(redis: RunningRedis, site: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        done = run_cli("workers", "--broker", redis.url(), "-f", "json", "--timeout", "1", env=broker_env(redis))
        if done.stdout and json.loads(done.stdout)["sites"].get(site):
            return
        time.sleep(0.3)
    raise AssertionError(f"the worker of {site} did not come up (exit {process.poll()})")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 1)])
def test_a_stopped_worker_writes_nothing_on_stdout(
    redis: RunningRedis, estate: Estate, sig: signal.Signals, code: int
) -> None:
    site = f"quiet-{sig.name.lower()}"
    process = subprocess.Popen(
        [*CLI, "worker", "--broker", redis.url(), "--site", site],
        env=cli_env({**estate.creds(), **broker_env(redis)}), cwd=REPO,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _ready(redis, site, process)
        process.send_signal(sig)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    # Celery's own handlers print "worker: Warm shutdown (MainProcess)" (and, on Ctrl-C, how to
    # force it) on stdout; the worker installs them silent (scanner/engine/sites/worker.py).
    assert out == b"", out
    assert process.returncode == code, err
    assert f"stopped (exit {code})".encode() in err, err
