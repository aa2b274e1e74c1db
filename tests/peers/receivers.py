"""Real receivers for the transport tests: rsyslog from Debian and a fake Splunk HEC."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.peers.pki import make_ca

TOKEN = "3f0c1a2b-4d5e-6f70-8192-a3b4c5d6e7f8"  # the HEC token the tests give FakeHec


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """Return a loopback port that is free right now (TCP or UDP)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Rsyslog:
    """A real rsyslogd with UDP, plain TCP (imptcp) and TLS (imtcp + gtls) inputs on loopback."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.tcp_port = free_port()
        self.tls_port = free_port()
        self.ca, cert, key = make_ca(folder / "pki")
        self.logs = {name: folder / f"{name}.log" for name in ("udp", "tcp", "tls")}
        work = folder / "work"
        work.mkdir(parents=True, exist_ok=True)
        self.pidfile = folder / "rsyslogd.pid"
        self.config = folder / "rsyslog.conf"
        self.config.write_text(
            f"""
global(workDirectory="{work}"
       maxMessageSize="64k"
       parser.escapeControlCharactersOnReceive="off"
       DefaultNetstreamDriverCAFile="{self.ca}"
       DefaultNetstreamDriverCertFile="{cert}"
       DefaultNetstreamDriverKeyFile="{key}")
module(load="imudp")
module(load="imptcp")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="udp") {{ action(type="omfile" file="{self.logs["udp"]}" template="raw" flushOnTXEnd="on") }}
ruleset(name="tcp") {{ action(type="omfile" file="{self.logs["tcp"]}" template="raw" flushOnTXEnd="on") }}
ruleset(name="tls") {{ action(type="omfile" file="{self.logs["tls"]}" template="raw" flushOnTXEnd="on") }}
input(type="imudp" address="127.0.0.1" port="{self.udp_port}" ruleset="udp")
input(type="imptcp" address="127.0.0.1" port="{self.tcp_port}" ruleset="tcp")
input(type="imtcp" address="127.0.0.1" port="{self.tls_port}" ruleset="tls")
""",
            encoding="utf-8",
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start rsyslogd in the foreground and wait until its TCP inputs accept connections."""
        binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        self.process = subprocess.Popen(
            [binary, "-n", "-f", str(self.config), "-i", str(self.pidfile)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "rsyslogd.stderr", "wb"),  # noqa: SIM115 - closed with the process
            env={**os.environ, "RSYSLOG_DYNNAME": f"natt{os.getpid()}"},
        )
        deadline = time.monotonic() + 10
        for port in (self.tcp_port, self.tls_port):
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError("rsyslogd exited: " + (self.folder / "rsyslogd.stderr").read_text())
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def stop(self) -> None:
        """Stop rsyslogd (SIGTERM, then SIGKILL)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def records(self, name: str, expected: int, timeout: float = 10.0) -> list[str]:
        """Return the raw messages in a log once `expected` arrived (or the timeout passed)."""
        path = self.logs[name]
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while time.monotonic() < deadline:
            if path.exists():
                text = path.read_bytes().decode("utf-8")
                lines = text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
                if len(lines) >= expected:
                    time.sleep(0.2)  # a duplicate would land right after
                    text = path.read_bytes().decode("utf-8")
                    return text.split("\n")[:-1]
            time.sleep(0.05)
        return lines


class FakeHec:
    """A local HTTPS server that answers like Splunk HEC: codes, Retry-After, acks, a down period.

    `script` holds the replies for the next event POSTs, as (http status, hec code, retry-after);
    once it is empty every POST succeeds. `drop` makes the next N requests close the connection
    without a reply (a down period). Accepted events are kept in `events`, in arrival order.
    """

    def __init__(self, folder: Path, token: str, port: int | None = None, *, ack_after: int = 1) -> None:
        self.token = token
        self.port = port or free_port()
        self.ca, cert, key = make_ca(folder / "hec-pki")
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.script: list[tuple[int, int, str | None]] = []
        self.drop = 0
        self.ack_after = ack_after  # polls before an ackId reports true
        self.events: list[dict[str, object]] = []
        self.requests: list[tuple[str, str]] = []  # (path, authorization header)
        self.posts = 0
        self._acks: dict[int, int] = {}
        self._next_ack = 0
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen on 127.0.0.1:port in a thread."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                del format, args

            def _reply(self, status: int, body: dict[str, object], retry_after: str | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with fake._lock:
                    fake.requests.append((self.path, self.headers.get("Authorization", "")))
                    if fake.drop > 0:
                        fake.drop -= 1
                        self.close_connection = True
                        self.connection.close()
                        return
                if self.headers.get("Authorization") != f"Splunk {fake.token}":
                    self._reply(401, {"text": "Invalid authorization", "code": 3})
                    return
                if self.path.startswith("/services/collector/ack"):
                    ids = json.loads(body)["acks"]
                    with fake._lock:
                        result: dict[str, object] = {}
                        for ack_id in ids:
                            fake._acks[ack_id] = fake._acks.get(ack_id, 0) + 1
                            result[str(ack_id)] = fake._acks[ack_id] >= fake.ack_after
                    self._reply(200, {"acks": result})
                    return
                with fake._lock:
                    fake.posts += 1
                    step = fake.script.pop(0) if fake.script else None
                if step is not None:
                    status, code, retry_after = step
                    self._reply(status, {"text": f"scripted {code}", "code": code}, retry_after)
                    return
                decoder = json.JSONDecoder()
                text, pos, events = body.decode("utf-8"), 0, []
                while pos < len(text):  # objects back to back, as HEC reads them
                    while pos < len(text) and text[pos].isspace():
                        pos += 1
                    if pos >= len(text):
                        break
                    obj, pos = decoder.raw_decode(text, pos)
                    events.append(obj)
                with fake._lock:
                    fake.events.extend(events)
                    ack_id = fake._next_ack
                    fake._next_ack += 1
                self._reply(200, {"text": "Success", "code": 0, "ackId": ack_id})

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.server.socket = self.context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.thread is not None:
            self.thread.join(5)
            self.thread = None

    def event_ids(self) -> list[str]:
        """Return event.event_id of every accepted event."""
        return [e["event"]["event_id"] for e in self.events]  # type: ignore[index]
