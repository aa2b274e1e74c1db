"""A rediss:// broker: TLS with a private CA given by --broker-ca-bundle, and refused without it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.peers.pki import make_ca
from tests.peers.redis_server import start_redis
from tests.support.cliproc import run_cli
from tests.support.sites import worker

pytestmark = pytest.mark.slow


def test_rediss_broker_with_a_ca_bundle(tmp_path: Path) -> None:
    ca, cert, key = make_ca(tmp_path / "pki")
    with start_redis(tmp_path / "redis", tls=(cert, key, ca)) as redis:
        env = {"NATT_AUDIT_BROKER_PASSWORD": redis.password}
        untrusted = run_cli("workers", "--broker", redis.tls_url(), env=env)
        assert untrusted.returncode == 2
        assert "not trusted" in untrusted.stderr
        creds = {"NATT_AUDIT_USERNAME": "LAB\\auditor", "NATT_AUDIT_PASSWORD": "unused", **env}
        tls = ["--broker-ca-bundle", str(ca)]
        with worker(redis.tls_url(), "secure", creds, tmp_path / "worker.log", args=tls):
            deadline = time.monotonic() + 60
            listed: dict[str, list[str]] = {}
            while time.monotonic() < deadline and not listed:
                done = run_cli("workers", "--broker", redis.tls_url(), *tls, "-f", "json", "--timeout", "1", env=env)
                listed = json.loads(done.stdout)["sites"] if done.stdout else {}
        assert list(listed) == ["secure"], (tmp_path / "worker.log").read_text()
