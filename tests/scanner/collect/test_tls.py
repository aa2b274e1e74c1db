"""docs/reliability.md#tls: self-signed, expired or wrong-name certificates are `tls` errors; no fallback at all."""

from __future__ import annotations

import pytest

from scanner.collect.collector import collect_host
from scanner.core.models import CollectOptions
from tests.peers.hostile_lab import Scanned
from tests.peers.pki import Pki
from tests.peers.rawserver import CREDENTIALS, RawServer, normal_reply, winrm_handler


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def _scan(pki: Pki, kind: str) -> tuple[object, RawServer]:
    with RawServer(winrm_handler(lambda r, n: normal_reply(r)), tls=pki.server_context(kind)) as server:
        obs = collect_host(
            server.target(), CREDENTIALS, CollectOptions(host_timeout=2, connect_timeout=1, ca_bundle=str(pki.ca))
        )
    return obs, server


def test_a_good_certificate_is_read(pki: Pki) -> None:
    obs, server = _scan(pki, "good")
    assert obs.error is None  # type: ignore[attr-defined]
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("kind", "words"),
    [("self-signed", "self-signed"), ("expired", "expired"), ("wrong-name", "mismatch")],
)
def test_bad_certificate_is_tls_verify_and_nothing_is_sent(pki: Pki, kind: str, words: str) -> None:
    obs, server = _scan(pki, kind)
    error = obs.error  # type: ignore[attr-defined]
    assert error is not None and (error.stage.value, error.reason) == ("tls", "tls_verify"), error
    assert words in error.message.lower(), error.message
    # One connection, and it spoke TLS from its first byte (0x16: handshake record): no retry over
    # plain HTTP, no second attempt without verification, no request sent over the bad channel.
    assert server.accepted == 1
    assert [b[:1] for b in server.first_bytes] == [b"\x16"]
    assert server.requests == []
    assert obs.requests == 0  # type: ignore[attr-defined]  # and none is counted


def test_lab_https_host_without_its_ca_is_a_tls_error(scanned: Scanned) -> None:
    error = scanned.hosts["f-https"]["error"]
    assert (error["stage"], error["reason"]) == ("tls", "tls_verify")
    assert scanned.hosts["f-https"]["requests"] == 0
