"""docs/reliability.md#http-faults: HTTP 401, 502 with an HTML page, 503 while WinRM restarts, proxy variables."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from scanner.collect.collector import collect_host
from scanner.core.models import CollectOptions, Observation
from tests.peers.hostile_lab import CREDS, Scanned, write_inventory
from tests.peers.lab import RunningLab
from tests.peers.pki import Pki
from tests.peers.rawserver import (
    CREDENTIALS,
    RawServer,
    Request,
    http,
    normal_reply,
    winrm_handler,
)
from tests.support.cliproc import natt_audit


def test_401_is_unauthorized(scanned: Scanned) -> None:
    error = scanned.hosts["f-auth-reject"]["error"]
    assert (error["stage"], error["reason"]) == ("auth", "unauthorized")


def test_502_html_from_a_proxy_is_http_502_without_the_page(scanned: Scanned) -> None:
    error = scanned.hosts["f-http-502"]["error"]
    assert (error["stage"], error["reason"]) == ("collect", "http_502")
    assert "<" not in error["message"] and "nginx" not in error["message"].lower()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def _collect(pki: Pki, reply, deadline: float = 4.0) -> tuple[Observation, float, RawServer]:  # type: ignore[no-untyped-def]
    with RawServer(winrm_handler(reply), tls=pki.server_context()) as server:
        started = time.monotonic()
        obs = collect_host(
            server.target(),
            CREDENTIALS,
            CollectOptions(host_timeout=deadline, connect_timeout=1, ca_bundle=str(pki.ca)),
        )
        return obs, time.monotonic() - started, server


def _unavailable(retry_after: str) -> bytes:
    return http(
        503,
        b"<html>Service Unavailable</html>",
        reason="Service Unavailable",
        ctype="text/html",
        extra=f"Retry-After: {retry_after}\r\n",
    )


def test_503_while_winrm_restarts_is_retried_within_budget(pki: Pki) -> None:
    def reply(req: Request, n: int) -> bytes:
        return _unavailable("1") if n == 0 else normal_reply(req)

    obs, took, server = _collect(pki, reply)
    assert obs.error is None, obs.error
    assert obs.os is not None and obs.os.version == "10.0.19045"
    assert 1.0 <= took < 4.0  # honoured Retry-After: 1, then read the host
    assert len(server.requests) == obs.requests == 4  # 503 + retry + two registry reads


def test_503_for_ever_is_http_503_within_the_deadline(pki: Pki) -> None:
    obs, took, _ = _collect(pki, lambda req, n: _unavailable("1"))
    assert obs.error is not None and (obs.error.stage.value, obs.error.reason) == ("collect", "http_503")
    assert took < 4.0


def test_503_asking_for_an_hour_does_not_stall_the_host(pki: Pki) -> None:
    obs, took, _ = _collect(pki, lambda req, n: _unavailable("3600"), deadline=2.0)
    assert obs.error is not None and obs.error.reason in ("http_503", "deadline")
    assert took < 2.5


@pytest.mark.parametrize("name", ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"])
def test_proxy_variables_are_ignored_and_never_printed(scanned: Scanned, tmp_path: Path, name: str) -> None:
    lab: RunningLab = scanned.lab
    with RawServer(lambda conn: conn.read_request()) as proxy:
        url = f"http://proxy-user:Pr0xy-Secret@127.0.0.1:{proxy.port}/"
        env = {**CREDS, name: url, name.lower(): url, "NO_PROXY": "", "no_proxy": ""}
        inventory = write_inventory(tmp_path / "hosts.yaml", lab, ["r-dword-2", "f-slow-ok"])
        out = tmp_path / "r.json"
        proc = natt_audit(
            "-v", "scan", "-i", str(inventory), "-f", "json", "-o", str(out), "--host-timeout", "3", env=env
        )
        time.sleep(0.1)
        assert proxy.accepted == 0  # nothing went through the "proxy"
    report = out.read_bytes()
    hosts = {h["name"]: h for h in json.loads(report)["hosts"]}
    assert hosts["r-dword-2"]["error"] is None and hosts["f-slow-ok"]["error"] is None
    everything = proc.stdout + proc.stderr + report
    for secret in (b"Pr0xy-Secret", b"proxy-user", str(proxy.port).encode()):
        assert secret not in everything
