"""docs/reliability.md#secrets: across runs that fail in many ways, no byte of any output holds the password or the
HEC token, in any encoding we could think of.

Captured: stdout and stderr of every run (verbose logs on), the JSON and console reports, every file
under the runs' state folder (history database, journal) and spool, and the exports of every format,
including a HEC delivery to a hostile collector that echoes the Authorization header back in its
error page, and one to a closed port.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.parse
from pathlib import Path

import pytest

from tests.peers.hostile_lab import CREDS, PASSWORD, USERNAME, Scanned
from tests.peers.pki import Pki
from tests.peers.rawserver import RawConn, RawServer, http
from tests.support.cliproc import natt_audit

WRONG = "Wr0ng-S3cret-Pass!"
HEC_TOKEN = "5ec2e7a0-hec0-t0k3n-9f1d-c0ffee5ec2e7"
FORMATS = ["json", "jsonl", "csv", "cef", "ocsf", "ecs", "hec", "junit", "html"]


def _b64_cores(data: bytes) -> list[bytes]:
    """Return the base64 text of `data` as it appears at any of the three byte alignments."""
    cores = []
    for offset in range(3):
        text = base64.b64encode(b"\0" * offset + data)
        head = (offset * 4 + 2) // 3
        cores.append(text[head + 1 : -4] if offset else text[:-4])
    return [c for c in cores if len(c) >= 8]


def encodings(secret: str) -> dict[str, bytes]:
    """Return the forms a secret could take in an output."""
    utf8, utf16 = secret.encode("utf-8"), secret.encode("utf-16-le")
    forms = {
        "plain": utf8,
        "utf-16le": utf16,
        "url": urllib.parse.quote(secret, safe="").encode(),
        "url-plus": urllib.parse.quote_plus(secret).encode(),
        "json": json.dumps(secret)[1:-1].encode(),
        "hex": utf8.hex().encode(),
        "hex-utf16": utf16.hex().encode(),
        "sha256": hashlib.sha256(utf8).hexdigest().encode(),
    }
    for i, core in enumerate(_b64_cores(utf8)):
        forms[f"base64-{i}"] = core
    for i, core in enumerate(_b64_cores(utf16)):
        forms[f"base64-utf16le-{i}"] = core
    try:  # the NT hash (MD4 of UTF-16LE) is what NTLM derives from the password
        from spnego._ntlm_raw.crypto import ntowfv1

        forms["nt-hash"] = ntowfv1(secret).hex().encode()
    except ImportError:
        pass
    return forms


def assert_clean(name: str, data: bytes, secrets: list[str]) -> None:
    """Fail if any encoding of any secret occurs in `data` (case-insensitively for hex forms)."""
    lowered = data.lower()
    for secret in secrets:
        for form, needle in encodings(secret).items():
            haystack = lowered if form.startswith(("hex", "sha", "nt-")) else data
            assert needle not in haystack, f"{form} form of a secret found in {name}"


class Capture:
    """Everything the runs produced."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def add(self, name: str, data: bytes) -> None:
        self.blobs[name] = data

    def add_tree(self, label: str, root: Path) -> None:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                self.blobs[f"{label}:{path.relative_to(root)}"] = path.read_bytes()


def _echo_collector(conn: RawConn) -> None:
    """A hostile HEC collector: 400 with the request's headers (token included) in the body."""
    while (req := conn.read_request()) is not None:
        echoed = ("\n".join(f"{k}: {v}" for k, v in req.headers.items())).encode()
        conn.send(
            http(
                400,
                b'{"text":"Invalid data format","echo":"' + echoed.replace(b"\n", b" ") + b'"}',
                ctype="application/json",
            )
        )


@pytest.fixture(scope="module")
def capture(scanned: Scanned, tmp_path_factory: pytest.TempPathFactory) -> Capture:
    work = tmp_path_factory.mktemp("leak")
    state, spool = work / "state", work / "spool"
    cap = Capture()
    # 1. The shared scan: auth-reject, SOAP faults, bad TLS, resets, bombs... with -v.
    cap.add("scan/stdout", scanned.proc.stdout)
    cap.add("scan/stderr", scanned.proc.stderr)
    cap.add("scan/report.json", scanned.report_bytes)
    base = {**CREDS, "XDG_STATE_HOME": str(state), "NATT_AUDIT_HEC_TOKEN": HEC_TOKEN, "NATT_AUDIT_SPOOL": str(spool)}
    inventory = str(scanned.lab.inventory)
    # 2. A wrong password on every host, console report on stdout, verbose, history on.
    wrong = {**base, "NATT_AUDIT_PASSWORD": WRONG}
    proc = natt_audit(
        "-v", "scan", "-i", inventory, "--host-timeout", "2", "--connect-timeout", "1", "--color", "always", env=wrong
    )
    cap.add("wrong/stdout", proc.stdout)
    cap.add("wrong/stderr", proc.stderr)
    # 3. The right password from a file, JSON logs, console report to a file.
    secret_file = work / "password.txt"
    secret_file.write_text(PASSWORD + "\n", encoding="utf-8")
    secret_file.chmod(0o600)
    env = {k: v for k, v in base.items() if k != "NATT_AUDIT_PASSWORD"}
    proc = natt_audit(
        "-v",
        "scan",
        "-i",
        inventory,
        "--password-file",
        str(secret_file),
        "-o",
        str(work / "report.txt"),
        "--host-timeout",
        "2",
        "--connect-timeout",
        "1",
        "--log-format",
        "json",
        env=env,
    )
    cap.add("file/stdout", proc.stdout)
    cap.add("file/stderr", proc.stderr)
    # 4. Exports of the shared report in every format, and HEC deliveries that fail.
    report = work / "report.json"
    report.write_bytes(scanned.report_bytes)
    for fmt in FORMATS:
        proc = natt_audit("-v", "export", "-f", fmt, str(report), env=base)
        cap.add(f"export-{fmt}/stdout", proc.stdout)
        cap.add(f"export-{fmt}/stderr", proc.stderr)
    pki = Pki(work / "pki")
    with RawServer(_echo_collector, tls=pki.server_context()) as collector:
        for dest in (
            f"hec+https://localhost:{collector.port}?ca={pki.ca}&retries=1&backoff_cap=0&timeout=2",
            f"hec+https://127.0.0.1:1?ca={pki.ca}&retries=1&backoff_cap=0&timeout=2",
            f"hec+https://127.0.0.1:1?token={HEC_TOKEN}",
        ):
            proc = natt_audit(
                "-v", "export", "-f", "hec", str(report), "--to", dest, "--spool", str(spool), env=base, timeout=60
            )
            cap.add(f"hec {dest}/stdout", proc.stdout)
            cap.add(f"hec {dest}/stderr", proc.stderr)
        cap.hec_requests = len(collector.requests)  # type: ignore[attr-defined]
    cap.add_tree("state", state)
    cap.add_tree("spool", spool)
    cap.add_tree("work", work)
    return cap


def test_the_runs_really_failed_in_many_ways(scanned: Scanned, capture: Capture) -> None:
    reasons = {h["error"]["reason"] for h in scanned.report["hosts"] if h["error"]}
    assert {"unauthorized", "tls_verify", "reset", "xml_forbidden", "quota", "deadline"} <= reasons
    assert b"unauthorized" in capture.blobs["wrong/stdout"] or b"401" in capture.blobs["wrong/stdout"]
    assert len(capture.blobs) > 20
    # The hostile collector got the token (so its echo could have leaked it) and refused the batch.
    assert capture.hec_requests >= 1  # type: ignore[attr-defined]
    hec_errors = b"".join(v for k, v in capture.blobs.items() if k.startswith("hec ") and k.endswith("stderr"))
    assert hec_errors.count(b"INCOMPLETE") == 2 and b"option token is not accepted" in hec_errors


def test_no_secret_in_any_byte(capture: Capture) -> None:
    for name, data in capture.blobs.items():
        if name.endswith("password.txt"):
            continue  # the input file itself
        assert_clean(name, data, [PASSWORD, WRONG, HEC_TOKEN])


def test_the_detector_would_see_a_leak() -> None:
    # Guard against a vacuous pass: each encoding is found when it is there.
    for secret in (PASSWORD, HEC_TOKEN):
        for form, needle in encodings(secret).items():
            with pytest.raises(AssertionError):
                assert_clean(form, b"xx" + needle + b"yy", [secret])
    blob = b"Authorization: Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode())
    with pytest.raises(AssertionError):
        assert_clean("basic", blob, [PASSWORD])
