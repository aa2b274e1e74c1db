"""With `log_format = "json"` every stderr line of a run full of warnings is one JSON object.

The warnings here come from every layer: the password file's mode (inputs), LM_COMPAT_LEVEL
(collect), a history database another natt-audit left 0644 (state), TLS verification off and
an expiring waiver (engine). The format is chosen in the config file, so it switches after
start-up, before the first of them.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.peers.rawserver import RawConn, RawServer
from tests.support.cliproc import run_cli_bytes


def _refuse_logon(conn: RawConn) -> None:
    if conn.read_request() is not None:
        conn.send(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def test_every_stderr_line_is_json_when_the_config_says_so(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("Lab-Passw0rd!\n", encoding="utf-8")
    password.chmod(0o644)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    db = state / "history.db"
    sqlite3.connect(db).close()
    db.chmod(0o644)  # as natt-audit used to create it
    inventory = tmp_path / "hosts.txt"
    soon = (datetime.now(UTC).date() + timedelta(days=3)).isoformat()
    waivers = tmp_path / "waivers.yaml"
    waivers.write_text(
        "waivers:\n"
        f"  - {{id: W-SOON, rules: [NATT-001], hosts: {{names: [nobody]}}, justification: lab, expires: {soon}}}\n",
        encoding="utf-8",
    )
    config = tmp_path / "natt-audit.toml"
    config.write_text(
        f'log_format = "json"\ninventory = "{inventory}"\ndatabase = "{db}"\n'
        f'waivers = ["{waivers}"]\ninsecure_skip_tls_verify = true\n'
        f'[credentials]\nusername = "LAB\\\\auditor"\npassword_file = "{password}"\n'
        "[timeouts]\nhost = 2\nconnect = 1\n",
        encoding="utf-8",
    )
    with RawServer(_refuse_logon) as host:  # a logon is attempted, so the NTLM level is set
        inventory.write_text(f"127.0.0.1:{host.port}\n", encoding="utf-8")
        done = run_cli_bytes("scan", "--config", str(config), env={"LM_COMPAT_LEVEL": "1", "PYTHONWARNINGS": "always"})
    assert done.returncode == 3, done.stderr
    docs = [json.loads(line) for line in done.stderr.decode().splitlines()]  # each line parses
    warnings = [d["msg"] for d in docs if d["level"] == "warning"]
    for words in (
        "password file",
        "LM_COMPAT_LEVEL=1 in the environment asks for NTLMv1/LM responses",
        "readable by other users (mode 0o644); made it 0600",
        "TLS certificate verification is OFF",
        "expires on",
    ):
        assert any(words in message for message in warnings), (words, warnings)
    assert any(doc["msg"].startswith("scanned 1 host:") for doc in docs)
