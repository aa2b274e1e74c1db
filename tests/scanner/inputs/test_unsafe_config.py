"""docs/reliability.md#unsafe-configuration: unsafe configurations are refused at start-up with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scanner.collect.collector import collect_host
from scanner.core.models import AuthMethod, CollectOptions, Scheme, Target
from tests.peers.hostile_lab import CREDS
from tests.peers.pki import HOSTNAME, Pki
from tests.peers.rawserver import CREDENTIALS, RawServer, normal_reply, winrm_handler
from tests.support.cliproc import natt_audit

SECRET = "S3cret-On-Argv-9"


@pytest.mark.parametrize(
    "text",
    [
        "hosts:\n  - {name: srv01, address: 127.0.0.1, transport: basic}\n",
        "defaults: {transport: basic}\nhosts:\n  - {name: srv01, address: 127.0.0.1, scheme: http}\n",
    ],
)
def test_basic_over_http_refused_at_load(tmp_path: Path, text: str) -> None:
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(text, encoding="utf-8")
    out = tmp_path / "r.json"
    proc = natt_audit("scan", "-i", str(inventory), "-f", "json", "-o", str(out), env=CREDS)
    assert proc.returncode == 2
    assert b"Basic over HTTP is refused" in proc.stderr
    assert f"{inventory}:".encode() in proc.stderr
    assert not out.exists()


def test_basic_over_http_sends_nothing_even_if_built_in_code() -> None:
    with RawServer(winrm_handler(lambda r, n: normal_reply(r))) as server:
        target = Target(
            name="srv", address="127.0.0.1", port=server.port, scheme=Scheme.HTTP, transport=AuthMethod.BASIC
        )
        obs = collect_host(target, CREDENTIALS, CollectOptions(host_timeout=2))
    assert obs.error is not None and (obs.error.stage.value, obs.error.reason) == ("auth", "insecure_basic")
    assert server.accepted == 0 and obs.requests == 0  # not even a TCP connection


@pytest.mark.parametrize(
    "argv",
    [
        ["--password", SECRET],
        [f"--password={SECRET}"],
        ["--PASSWORD", SECRET],
        [f"-P{SECRET}"],
        ["--passw", SECRET],
        ["--secret", SECRET],
        ["--token", SECRET],  # not an option: argparse's own error must not echo the value either
        ["--pasword", SECRET],  # a typo
        ["-i", f"https://auditor:{SECRET}@127.0.0.1/hosts.txt"],
    ],
)
def test_credentials_on_the_command_line_refused_without_echo(tmp_path: Path, argv: list[str]) -> None:
    inventory = tmp_path / "hosts.txt"
    inventory.write_text("127.0.0.1:9\n", encoding="utf-8")
    proc = natt_audit("scan", "-i", str(inventory), *argv, env=CREDS)
    assert proc.returncode == 2
    assert proc.stderr.startswith(b"natt-audit: error:")
    assert SECRET.encode() not in proc.stdout + proc.stderr
    assert b"scanned" not in proc.stderr


def _raw_inventory(path: Path, port: int) -> Path:
    path.write_text(
        f"hosts:\n  - {{name: {HOSTNAME}, address: 127.0.0.1, port: {port}, scheme: https, transport: basic}}\n",
        encoding="utf-8",
    )
    return path


def test_certificate_checks_stay_on_without_the_explicit_flag(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    handler = winrm_handler(lambda r, n: normal_reply(r))
    with RawServer(handler, tls=pki.server_context("self-signed")) as server:
        inventory = _raw_inventory(tmp_path / "hosts.yaml", server.port)
        out = tmp_path / "r.json"
        # Variables that turn verification off in other tools (Python's PEP 493 switch, requests,
        # curl) must not do so here.
        env = {**CREDS, "PYTHONHTTPSVERIFY": "0", "CURL_CA_BUNDLE": "", "REQUESTS_CA_BUNDLE": ""}
        proc = natt_audit("scan", "-i", str(inventory), "-f", "json", "-o", str(out), "--host-timeout", "2", env=env)
        host = json.loads(out.read_text(encoding="utf-8"))["hosts"][0]
        assert (host["error"]["stage"], host["error"]["reason"]) == ("tls", "tls_verify"), host["error"]
        assert proc.returncode == 3
        assert server.requests == []  # no request was sent over the unverified channel
        # With the explicit flag the same host is read, and the run says so loudly.
        proc = natt_audit(
            "scan",
            "-i",
            str(inventory),
            "-f",
            "json",
            "-o",
            str(out),
            "--host-timeout",
            "2",
            "--insecure-skip-tls-verify",
            env=CREDS,
        )
        host = json.loads(out.read_text(encoding="utf-8"))["hosts"][0]
        assert host["error"] is None, host["error"]
        assert b"verification is OFF" in proc.stderr
