"""docs/reliability.md#xml-attacks: XML bombs, 200 MB and 200,000-deep replies are rejected within 1 s and 50 MB.

Measured in a child process (so nothing else in the test run inflates the figures): it serves each
hostile reply from a loopback HTTPS server and calls `collect_host` against it, once timed, once
under tracemalloc; it also reports its peak RSS growth (ru_maxrss) over a warmed-up baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.peers.hostile_lab import REPO, Scanned

CHILD = r"""
import json, resource, socket, sys, time, tracemalloc
from pathlib import Path
from tests.peers.pki import Pki
from tests.peers.rawserver import CREDENTIALS, RawServer, envelope, http, normal_reply, winrm_handler
from scanner.collect.collector import collect_host
from scanner.core.models import CollectOptions

MB = 1024 * 1024
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                     for i in range(1, 10))
          + b']><lolz>&lol9;</lolz>')
QUADRATIC = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "' + b"x" * 100_000 + b'">]><r>'
             + b"&a;" * 100_000 + b"</r>")[: 900_000]
XXE = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
PARAM = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]><r/>'


def deep(req):
    env = envelope(req.message_id, "")
    head = env[: env.index(b"<s:Body>") + len(b"<s:Body>")]
    return http(200, head + b"<a>" * 200_000)


def big_length(conn):
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nContent-Length: %d\r\n\r\n" % (200 * MB))
    stream(conn, 200)


def big_chunked(conn):
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % MB + b"<" * MB + b"\r\n"
    for _ in range(200):
        conn.send(chunk)


def big_until_close(conn):
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nConnection: close\r\n\r\n")
    stream(conn, 200)


def big_headers(conn):
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\n")
    for _ in range(200 * 1024):
        conn.send(b"X-Filler: " + b"a" * 1010 + b"\r\n")


def stream(conn, megabytes):
    block = b"<a>" * (MB // 3)
    for _ in range(megabytes):
        conn.send(block)


def body(data):
    return winrm_handler(lambda req, n: http(200, data))


CASES = {
    "billion-laughs": body(LAUGHS),
    "quadratic-blowup": body(QUADRATIC),
    "external-entity": body(XXE),
    "parameter-entity": body(PARAM),
    "deep-200000": winrm_handler(lambda req, n: deep(req)),
    "200mb-content-length": big_length,
    "200mb-chunked": big_chunked,
    "200mb-until-close": big_until_close,
    "200mb-headers": big_headers,
}

pki = Pki(Path(sys.argv[1]))
ctx = pki.server_context()
options = CollectOptions(host_timeout=10, connect_timeout=1, ca_bundle=str(pki.ca))
with RawServer(winrm_handler(lambda r, n: normal_reply(r)), tls=ctx) as warm:  # warm up imports, TLS
    collect_host(warm.target(), CREDENTIALS, options)
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = {}
for name, handler in CASES.items():
    with RawServer(handler, tls=ctx) as server:
        start = time.monotonic()
        obs = collect_host(server.target(), CREDENTIALS, options)
        took = time.monotonic() - start
    with RawServer(handler, tls=ctx) as server:
        tracemalloc.start()
        collect_host(server.target(), CREDENTIALS, options)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    out[name] = {"stage": obs.error and obs.error.stage.value, "reason": obs.error and obs.error.reason,
                 "seconds": took, "peak_bytes": peak}
out["_rss_growth_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss
print(json.dumps(out))
"""

EXPECTED = {
    "billion-laughs": ("parse", "xml_forbidden"),
    "quadratic-blowup": ("parse", "xml_forbidden"),
    "external-entity": ("parse", "xml_forbidden"),
    "parameter-entity": ("parse", "xml_forbidden"),
    "deep-200000": ("parse", "xml_too_deep"),
    "200mb-content-length": ("parse", "oversize"),
    "200mb-chunked": ("parse", "oversize"),
    "200mb-until-close": ("parse", "oversize"),
    "200mb-headers": ("parse", "oversize"),
}


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pki = tmp_path_factory.mktemp("pki")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(pki)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_rejected_fast_and_small(measured: dict[str, Any], case: str) -> None:
    result = measured[case]
    assert (result["stage"], result["reason"]) == EXPECTED[case], result
    assert result["seconds"] < 1.0, result
    assert result["peak_bytes"] < 50 * 1024 * 1024, result


def test_process_memory_stays_flat(measured: dict[str, Any]) -> None:
    assert measured["_rss_growth_kb"] < 50 * 1024, measured["_rss_growth_kb"]


def test_lab_bomb_and_oversize(scanned: Scanned) -> None:
    assert scanned.hosts["f-xml-bomb"]["error"]["reason"] == "xml_forbidden"
    assert scanned.hosts["f-oversize"]["error"]["reason"] == "oversize"


def test_report_for_bomb_host_is_small(scanned: Scanned, tmp_path: Path) -> None:
    # Nothing of the hostile reply is copied into the report: the message is a short summary.
    for name in ("f-xml-bomb", "f-oversize", "f-malformed"):
        assert len(json.dumps(scanned.hosts[name])) < 4096
