"""Splunk HTTP Event Collector client: batches <= 1 MB, retries with backoff, acks, dead letters."""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import json
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import SecretStr

from reports.export.destinations import Destination, Kind
from reports.export.syslog import full_jitter
from reports.findings import Finding, JsonValue
from reports.formats import hec as hec_format
from scanner.core.sanitize import one_line

# docs/siem.md#hec-delivery: retry on 8 (internal error), 9 (busy), 18-20 (unhealthy); never on 1-7 or
# 10-16. Of those, 1-4 are token problems: every batch would fail the same way, so the run stops
# and leaves the events pending instead of parking good events in the dead-letter file.
RETRY_CODES = frozenset({8, 9, 18, 19, 20})
AUTH_CODES = frozenset({1, 2, 3, 4})
REJECT_CODES = frozenset({5, 6, 7, 10, 11, 12, 13, 14, 15, 16})
MAX_RETRY_AFTER = 300.0  # a longer Retry-After ends this run's attempts; `ship` resumes later
_TEXT_LIMIT = 200


@dataclass(frozen=True)
class Reply:
    """What one HEC request returned."""

    status: int
    code: int | None
    text: str
    retry_after: float | None
    body: dict[str, object] | None


@dataclass(frozen=True)
class Verdict:
    """The decision about one batch: delivered, retry, dead-letter or stop the destination."""

    action: str  # "ok", "retry", "dead", "stop"
    reason: str
    retry_after: float | None = None


def classify(reply: Reply) -> Verdict:
    """Map an HTTP status and HEC code to ok / retry / dead / stop (docs/siem.md#hec-delivery)."""
    code, status = reply.code, reply.status
    what = (
        f"HTTP {status}"
        + (f" code {code}" if code is not None else "")
        + (f": {reply.text}" if reply.text else "")
    )
    if status == 200 and code in (0, None):
        return Verdict("ok", what)
    if code in RETRY_CODES or status == 429 or status >= 500:
        return Verdict("retry", what, reply.retry_after)
    if code in AUTH_CODES or status in (401, 403):
        return Verdict("stop", what)
    if code in REJECT_CODES or 400 <= status < 500:
        return Verdict("dead", what)
    return Verdict("retry", what, reply.retry_after)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Parse Retry-After (delta-seconds or an HTTP date) into seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


class HecClient:
    """Deliver findings to one HEC endpoint. The token lives only here and never in a message."""

    def __init__(
        self,
        destination: Destination,
        token: SecretStr,
        *,
        sleep: Callable[[float], None] = time.sleep,
        backoff_base: float = 0.5,
        ack_timeout: float = 60.0,
        ack_poll: float = 0.5,
    ) -> None:
        if destination.kind is not Kind.HEC:
            raise ValueError("not a HEC destination")
        self.destination = destination
        self._token = token
        self._sleep = sleep
        self._backoff_base = backoff_base
        self._ack_timeout = ack_timeout
        self._ack_poll = ack_poll
        self.channel = str(uuid.uuid4())
        self._conn: http.client.HTTPSConnection | None = None
        self.requests = 0

    def __repr__(self) -> str:
        return f"HecClient({self.destination.text!r}, token='**********')"

    def _redact(self, text: str) -> str:
        secret = self._token.get_secret_value()
        return one_line(text.replace(secret, "**********"), _TEXT_LIMIT)

    # -- HTTP ------------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPSConnection:
        if self._conn is None:
            d = self.destination
            assert d.host is not None and d.port is not None
            context = ssl.create_default_context(cafile=d.ca_file)  # verification always on
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            # http.client never reads proxy variables: the destination is reached directly.
            self._conn = http.client.HTTPSConnection(d.host, d.port, timeout=d.timeout, context=context)
        return self._conn

    def close(self) -> None:
        """Close the kept-alive connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _post(self, path: str, body: bytes) -> Reply:
        conn = self._connection()
        headers = {
            "Authorization": f"Splunk {self._token.get_secret_value()}",
            "Content-Type": "application/json",
            "X-Splunk-Request-Channel": self.channel,
            "User-Agent": "natt-audit",
        }
        self.requests += 1
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read(1024 * 1024)
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        parsed: dict[str, object] | None = None
        with contextlib.suppress(ValueError):
            value = json.loads(raw.decode("utf-8", "replace"))
            if isinstance(value, dict):
                parsed = value
        code = parsed.get("code") if parsed else None
        text = parsed.get("text") if parsed else raw[:_TEXT_LIMIT].decode("utf-8", "replace")
        return Reply(
            status=response.status,
            code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            text=self._redact(str(text or "")),
            retry_after=retry_after(response.getheader("Retry-After")),
            body=parsed,
        )

    # -- batches ---------------------------------------------------------------------------------
    def lines(self, findings: list[Finding]) -> list[bytes]:
        """Return the HEC event of each finding as bytes (one JSON object per line)."""
        index = self.destination.index
        return [(hec_format.line(f, index=index) + "\n").encode("utf-8") for f in findings]

    def batches(self, findings: list[Finding]) -> list[list[tuple[Finding, bytes]]]:
        """Group findings into batches whose body is at most `batch_bytes`."""
        limit = self.destination.batch_bytes
        batches: list[list[tuple[Finding, bytes]]] = []
        current: list[tuple[Finding, bytes]] = []
        size = 0
        for finding, line in zip(findings, self.lines(findings), strict=True):
            if current and size + len(line) > limit:
                batches.append(current)
                current, size = [], 0
            current.append((finding, line))
            size += len(line)
        if current:
            batches.append(current)
        return batches

    def _wait_ack(self, ack_id: int) -> bool:
        """Poll /services/collector/ack until the batch is indexed; False on timeout."""
        deadline = time.monotonic() + self._ack_timeout
        body = json.dumps({"acks": [ack_id]}).encode("ascii")
        while time.monotonic() < deadline:
            try:
                reply = self._post(f"/services/collector/ack?channel={self.channel}", body)
            except (OSError, http.client.HTTPException):
                reply = None
            if reply is not None and reply.status == 200 and reply.body is not None:
                acks = reply.body.get("acks")
                if isinstance(acks, dict) and acks.get(str(ack_id)) is True:
                    return True
            self._sleep(self._ack_poll)
        return False

    def send_batch(self, body: bytes) -> Verdict:
        """Send one batch with retries; return the final verdict."""
        d = self.destination
        verdict = Verdict("retry", "not sent")
        for attempt in range(d.retries):
            try:
                reply = self._post(d.hec_path, body)
            except (OSError, http.client.HTTPException) as exc:  # ssl.SSLError is an OSError
                verdict = Verdict("retry", self._redact(f"{type(exc).__name__}: {exc}"))
                if isinstance(exc, ssl.SSLCertVerificationError):
                    return Verdict("stop", verdict.reason)  # a wrong certificate does not heal
            else:
                verdict = classify(reply)
                if verdict.action == "ok" and d.ack:
                    ack_id = reply.body.get("ackId") if reply.body else None
                    if not isinstance(ack_id, int) or isinstance(ack_id, bool):
                        return Verdict("stop", "indexer acknowledgement requested but the reply has no ackId")
                    if not self._wait_ack(ack_id):
                        verdict = Verdict("retry", f"no indexer acknowledgement for ackId {ack_id}")
                if verdict.action != "retry":
                    return verdict
            if attempt + 1 >= d.retries:
                break
            delay = full_jitter(attempt, self._backoff_base, d.backoff_cap)
            if verdict.retry_after is not None:
                if verdict.retry_after > MAX_RETRY_AFTER:
                    return Verdict("stop", f"{verdict.reason} (Retry-After {verdict.retry_after:.0f} s)")
                delay = max(delay, verdict.retry_after)
            self._sleep(delay)
        return Verdict("stop", f"gave up after {d.retries} attempts: {verdict.reason}")

    def deliver(
        self,
        findings: list[Finding],
        on_acked: Callable[[list[str]], None],
        on_dead: Callable[[list[dict[str, JsonValue]]], None],
    ) -> str | None:
        """Send every finding in batches; report acked and dead-lettered ones; return an error or None."""
        try:
            for batch in self.batches(findings):
                body = b"".join(line for _, line in batch)
                if len(body) > self.destination.batch_bytes:
                    verdict = Verdict("dead", f"one event of {len(body)} bytes exceeds the batch limit")
                else:
                    verdict = self.send_batch(body)
                uids = [f.event_uid for f, _ in batch]
                if verdict.action == "ok":
                    on_acked(uids)
                elif verdict.action == "dead":
                    on_dead(
                        [
                            {
                                "event_uid": f.event_uid,
                                "finding_uid": f.finding_uid,
                                "scan_id": f.scan_id,
                                "reason": verdict.reason,
                                "event": json.loads(line),
                            }
                            for f, line in batch
                        ]
                    )
                else:
                    return f"{self.destination.text}: {verdict.reason}"
            return None
        finally:
            self.close()
