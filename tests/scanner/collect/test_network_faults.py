"""docs/reliability.md#network-faults: every fault ends within the host deadline with its own reason; workers are freed.

Lab faults come from the one shared scan (fixture `scanned`). What the lab cannot do (SYN
black-holed, RST right after the headers, headers then silence, FIN mid-body, endless
operation-timeout faults) comes from `rawserver` on loopback, collected concurrently in one
`collect_all`, each host's finish time recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from scanner.core.models import AuthMethod, CollectOptions, Observation, Scheme, Target
from scanner.engine.logon import LogonPolicy
from scanner.engine.pool import collect_all
from tests.peers.hostile_lab import CREDS, HOST_TIMEOUT, Scanned
from tests.peers.pki import HOSTNAME, Pki
from tests.peers.rawserver import (
    CREDENTIALS,
    RawConn,
    RawServer,
    blackholed_port,
    envelope,
    fault_body,
    http,
    winrm_handler,
)
from tests.support.cliproc import natt_audit

LAB_CASES = {
    "f-refuse": ("connect", "refused"),
    "f-blackhole": ("timeout", "deadline"),
    "f-trickle": ("timeout", "deadline"),
    "f-reset": ("connect", "reset"),
    "f-op-timeout": ("collect", "operation_timeout"),
}


@pytest.mark.parametrize("name", sorted(LAB_CASES))
def test_lab_network_fault_has_its_own_reason(scanned: Scanned, name: str) -> None:
    host = scanned.hosts[name]
    assert host["status"] == "error" and host["setting"] is None
    assert (host["error"]["stage"], host["error"]["reason"]) == LAB_CASES[name]
    assert {r["status"] for r in host["results"]} == {"error"}


def test_the_whole_scan_ends_within_one_deadline(scanned: Scanned) -> None:
    # Blackhole and trickle each hold a host for the full deadline; they run side by side, so the
    # run costs about one deadline plus start-up, and a healthy host beside them is unaffected.
    assert scanned.elapsed < HOST_TIMEOUT + 8, scanned.elapsed
    assert scanned.hosts["f-slow-ok"]["status"] == "pass"
    assert len(scanned.report["hosts"]) == len(scanned.lab.hosts)


# ---- local servers --------------------------------------------------------------------------------

Handler = Callable[[RawConn], None]
DEADLINE = 1.5


def _rst_after_headers(conn: RawConn) -> None:
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nContent-Length: 5000\r\n\r\n")
    time.sleep(0.05)
    conn.reset()


def _headers_then_silence(conn: RawConn) -> None:
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nContent-Length: 5000\r\n\r\n")
    time.sleep(30)


def _fin_mid_body(conn: RawConn) -> None:
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n<s:Envelope")


def _byte_every_two_seconds(conn: RawConn) -> None:
    conn.read_request()
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789":
        conn.send(bytes([byte]))
        time.sleep(2)


def _accept_and_say_nothing(conn: RawConn) -> None:
    time.sleep(30)


def _timeout_fault(req: object, n: int) -> bytes:
    return http(500, envelope(getattr(req, "message_id", ""), fault_body("2150858793", "timed out")))


RAW_CASES: dict[str, tuple[Handler | None, tuple[str, str], float]] = {
    # name -> (handler on plain HTTP; None = SYN black-holed port), (stage, reason), earliest end
    "syn-blackholed": (None, ("connect", "connect_timeout"), 0.9),
    "rst-after-headers": (_rst_after_headers, ("connect", "reset"), 0.0),
    "headers-then-silence": (_headers_then_silence, ("timeout", "deadline"), DEADLINE - 0.05),
    "fin-mid-body": (_fin_mid_body, ("connect", "closed"), 0.0),
    "byte-every-2s": (_byte_every_two_seconds, ("timeout", "deadline"), DEADLINE - 0.05),
    "accept-then-nothing": (_accept_and_say_nothing, ("timeout", "deadline"), DEADLINE - 0.05),
}


@pytest.fixture(scope="module")
def raw_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Observation, float]]]:
    pki = Pki(tmp_path_factory.mktemp("pki"))
    with ExitStack() as stack:
        targets = []
        for name, (handler, _, _) in RAW_CASES.items():
            if handler is None:
                port = stack.enter_context(blackholed_port())
            else:
                port = stack.enter_context(RawServer(handler)).port
            targets.append(Target(name=name, address="127.0.0.1", port=port))
        # Endless operation-timeout faults, over HTTPS/Basic (plain SOAP: no NTLM sealing needed).
        faults = stack.enter_context(RawServer(winrm_handler(_timeout_fault), tls=pki.server_context()))
        targets.append(
            Target(
                name=HOSTNAME, address="127.0.0.1", port=faults.port, scheme=Scheme.HTTPS, transport=AuthMethod.BASIC
            )
        )
        finished: dict[str, float] = {}
        lock = threading.Lock()
        started = time.monotonic()

        def on_result(obs: Observation) -> None:
            with lock:
                finished[obs.target.name] = time.monotonic() - started

        options = CollectOptions(host_timeout=DEADLINE, connect_timeout=1.0, ca_bundle=str(pki.ca))
        # Every host here is hostile, so none ever accepts a logon: the lockout policy would probe them
        # one at a time (docs/authentication.md#lockout-safety). These tests time each host against
        # its own deadline from one common start, so they fan out at once, as after a proven logon.
        proven = LogonPolicy(concurrency=16, proven=True)
        observations = collect_all(targets, CREDENTIALS, options, concurrency=16, on_result=on_result, logon=proven)
        assert [o.target.name for o in observations] == [t.name for t in targets]
        results = {o.target.name: (o, finished[o.target.name]) for o in observations}
        results["_faults_requests"] = (observations[-1], float(len(faults.requests)))
        yield results


@pytest.mark.parametrize("name", sorted(RAW_CASES))
def test_raw_network_fault_ends_in_deadline_with_its_reason(
    raw_results: dict[str, tuple[Observation, float]], name: str
) -> None:
    obs, took = raw_results[name]
    _, expected, earliest = RAW_CASES[name]
    assert obs.error is not None, obs
    assert (obs.error.stage.value, obs.error.reason) == expected, obs.error
    assert earliest <= took < DEADLINE + 0.5, f"{name} ended after {took:.2f}s"


def test_endless_operation_timeout_faults_are_not_retried_forever(
    raw_results: dict[str, tuple[Observation, float]],
) -> None:
    obs, took = raw_results[HOSTNAME]
    assert obs.error is not None and (obs.error.stage.value, obs.error.reason) == ("collect", "operation_timeout")
    assert took < DEADLINE + 0.5
    _, requests = raw_results["_faults_requests"]
    assert 1 <= requests <= 3  # classified on the first fault, not a retry loop


def test_black_holed_hosts_free_their_worker(tmp_path: Path) -> None:
    """N SYN-black-holed hosts at concurrency 1 cost about N x connect timeout, never a hung worker."""
    with ExitStack() as stack:
        ports = [stack.enter_context(blackholed_port()) for _ in range(3)]
        inventory = tmp_path / "hosts.yaml"
        inventory.write_text(
            "hosts:\n" + "".join(f"  - {{name: syn-{p}, address: 127.0.0.1, port: {p}}}\n" for p in ports),
            encoding="utf-8",
        )
        out = tmp_path / "r.json"
        started = time.monotonic()
        proc = natt_audit(
            "scan",
            "-i",
            str(inventory),
            "-f",
            "json",
            "-o",
            str(out),
            "--concurrency",
            "1",
            "--host-timeout",
            "2",
            "--connect-timeout",
            "1",
            env=CREDS,
        )
        elapsed = time.monotonic() - started
    report = json.loads(out.read_text(encoding="utf-8"))
    assert proc.returncode == 3, proc.stderr
    assert [h["error"]["reason"] for h in report["hosts"]] == ["connect_timeout"] * 3
    assert 3.0 <= elapsed < 3.0 + 6, elapsed
