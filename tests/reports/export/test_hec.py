"""Splunk HEC delivery against a local HTTPS server that answers like HEC."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from pydantic import SecretStr

from reports.export.destinations import Destination, DestinationError, load_token, parse_destination
from reports.export.hec import HecClient, Reply, classify, retry_after
from reports.export.ship import export_report, ship
from reports.export.spool import Spool
from reports.findings import Finding, flatten
from tests.peers.receivers import TOKEN, FakeHec
from tests.reports.export.test_syslog import hostile_report

ENV = {"NATT_AUDIT_HEC_TOKEN": TOKEN}


@pytest.fixture(scope="module")
def findings() -> list[Finding]:
    """Return the findings of the hostile report."""
    return list(flatten(*hostile_report()))


def dest(hec: FakeHec, extra: str = "", retries: int = 4) -> Destination:
    """Return a HEC destination for the fake server: small batches, fast retries."""
    return parse_destination(
        f"hec+https://127.0.0.1:{hec.port}?ca={hec.ca}&batch_bytes=8000&backoff_cap=0.05"
        f"&retries={retries}{extra}"
    )


def client(destination: Destination, sleeps: list[float] | None = None) -> HecClient:
    """Return a client whose sleeps are recorded, not slept."""
    record = sleeps if sleeps is not None else []
    return HecClient(destination, SecretStr(TOKEN), sleep=record.append, ack_poll=0.0)


def _deliver(c: HecClient, findings: list[Finding]) -> tuple[str | None, list[str], list[dict[str, object]]]:
    acked: list[str] = []
    dead: list[dict[str, object]] = []
    error = c.deliver(findings, acked.extend, dead.extend)
    return error, acked, dead


def test_delivers_in_batches_with_indexer_ack(fake_hec: FakeHec, findings: list[Finding]) -> None:
    fake_hec.ack_after = 2  # first poll says "not yet"
    c = client(dest(fake_hec, "&ack=1"))
    error, acked, dead = _deliver(c, findings)
    assert error is None and dead == []
    assert fake_hec.event_ids() == [f.event_uid for f in findings] == acked
    assert fake_hec.posts > 1  # more than one batch
    assert all(auth == f"Splunk {TOKEN}" for _, auth in fake_hec.requests)
    assert any(path.startswith("/services/collector/ack") for path, _ in fake_hec.requests)
    assert c.batches(findings) and all(
        sum(len(line) for _, line in batch) <= 8000 for batch in c.batches(findings)
    )
    evil = next(e for e in fake_hec.events if "evil" in str(e["host"]))
    assert evil["event"]["message"] == next(f.message for f in findings if "evil" in f.host)  # type: ignore[index]


def test_retries_503_429_and_5xx_honouring_retry_after(fake_hec: FakeHec, findings: list[Finding]) -> None:
    fake_hec.script = [(503, 9, None), (429, 9, "7"), (500, 8, None), (503, 18, None)]
    sleeps: list[float] = []
    error, acked, dead = _deliver(client(dest(fake_hec, retries=5), sleeps), findings[:5])
    assert error is None and dead == []
    assert fake_hec.event_ids() == acked == [f.event_uid for f in findings[:5]]
    assert len(sleeps) == 4 and sleeps[1] >= 7  # Retry-After honoured
    assert all(s <= 0.05 for i, s in enumerate(sleeps) if i != 1)  # capped full jitter


def test_no_retry_on_bad_data_goes_to_dead_letter(fake_hec: FakeHec, findings: list[Finding]) -> None:
    fake_hec.script = [(400, 6, None)]
    error, acked, dead = _deliver(client(dest(fake_hec)), findings)
    assert error is None
    assert fake_hec.posts == len(client(dest(fake_hec)).batches(findings))  # the bad batch: one request
    assert dead and {d["reason"] for d in dead} == {"HTTP 400 code 6: scripted 6"}
    assert sorted(acked + [str(d["event_uid"]) for d in dead]) == sorted(f.event_uid for f in findings)


def test_bad_token_stops_and_leaves_everything_pending(
    fake_hec: FakeHec, findings: list[Finding], tmp_path: Path
) -> None:
    fake_hec.token = "another-token"
    summary = export_report(*hostile_report(), [dest(fake_hec)], tmp_path / "spool", env=ENV)
    (outcome,) = summary.destinations
    assert outcome.pending == len(findings) and outcome.dead_lettered == 0
    assert outcome.error is not None and "code 3" in outcome.error
    assert fake_hec.posts == 0 and len(fake_hec.requests) == 1  # 401: never retried
    assert summary.exit_code == 5
    _assert_no_token(tmp_path, summary.lines())


def test_down_period_is_retried_without_loss(fake_hec: FakeHec, findings: list[Finding]) -> None:
    fake_hec.drop = 3
    error, acked, _ = _deliver(client(dest(fake_hec)), findings)
    assert error is None
    assert Counter(fake_hec.event_ids()) == Counter(f.event_uid for f in findings)
    assert sorted(acked) == sorted(f.event_uid for f in findings)


def test_down_for_the_whole_run_then_ship(tmp_path: Path, findings: list[Finding]) -> None:
    hec = FakeHec(tmp_path, TOKEN)  # its port is chosen but nothing listens yet
    destination = dest(hec, retries=2)
    report = hostile_report()
    spool_dir = tmp_path / "spool"
    summary = export_report(report.header, report.hosts, [destination], spool_dir, env=ENV)
    assert summary.exit_code == 5
    assert summary.destinations[0].pending == len(findings)
    assert "INCOMPLETE" in summary.lines()[1] and f"{len(findings)} pending" in summary.lines()[1]
    spooled = Spool(spool_dir).pending(destination, report.header.scan.id)
    assert [f.event_uid for f in spooled] == [f.event_uid for f in findings]
    hec.start()
    try:
        shipped = ship(spool_dir, env=ENV)
        assert shipped.exit_code == 0, shipped.lines()
        assert hec.event_ids() == [f.event_uid for f in findings]  # same ids, once each
        assert ship(spool_dir, env=ENV).destinations[0].already == len(findings)
        assert hec.posts == len(HecClient(destination, SecretStr(TOKEN)).batches(findings))
    finally:
        hec.stop()
    _assert_no_token(tmp_path, summary.lines() + shipped.lines())


def _assert_no_token(folder: Path, lines: list[str]) -> None:
    assert all(TOKEN not in line for line in lines)
    for path in folder.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_token_file_and_refusals(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    d = parse_destination(f"hec+https://127.0.0.1:8088?token_file={token_file}")
    assert load_token(d, {}).get_secret_value() == TOKEN
    assert TOKEN not in repr(HecClient(d, load_token(d, {})))
    with pytest.raises(DestinationError, match="NATT_AUDIT_HEC_TOKEN") as caught:
        parse_destination(f"hec+https://127.0.0.1:8088?token={TOKEN}")
    assert TOKEN not in str(caught.value)
    with pytest.raises(DestinationError) as caught:
        parse_destination(f"hec+https://x:{TOKEN}@127.0.0.1:8088")
    assert TOKEN not in str(caught.value)
    with pytest.raises(DestinationError, match="no HEC token"):
        load_token(parse_destination("hec+https://127.0.0.1:8088"), {})


def test_classification_table() -> None:
    def verdict(status: int, code: int | None) -> str:
        return classify(Reply(status, code, "", None, None)).action

    assert verdict(200, 0) == "ok"
    for code in (8, 9, 18, 19, 20):
        assert verdict(503, code) == "retry"
    assert verdict(429, None) == "retry" and verdict(502, None) == "retry"
    for code in (1, 2, 3, 4):
        assert verdict(403, code) == "stop"
    for code in (5, 6, 7, 10, 11, 12, 13, 14, 15, 16):
        assert verdict(400, code) == "dead"
    assert verdict(413, None) == "dead"
    assert retry_after("12") == 12.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
