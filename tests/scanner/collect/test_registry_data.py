"""docs/reliability.md#registry-data: each shape gives its documented result (docs/domain.md#effective-mode)."""

from __future__ import annotations

import json

import pytest

from tests.peers.hostile_lab import REGISTRY_HOSTS, Scanned

# name -> (NATT-001, NATT-002, NATT-003) with the baseline policy
VERDICTS = {
    "r-sz-2": ("pass", "fail", "pass"),
    "r-sz-02": ("pass", "fail", "pass"),
    "r-sz-spaced": ("pass", "fail", "pass"),
    "r-sz-empty": ("pass", "fail", "pass"),
    "r-dword-max": ("fail", "fail", "pass"),
    "r-dword-3": ("fail", "fail", "pass"),
    "r-qword": ("pass", "fail", "pass"),
    "r-qword-big": ("pass", "fail", "pass"),
    "r-binary": ("pass", "fail", "pass"),
    "r-multi": ("pass", "fail", "pass"),
    "r-both-keys": ("pass", "pass", "fail"),
    "r-both-keys-2003": ("pass", "pass", "fail"),
    "r-dword-2": ("fail", "pass", "pass"),
}


@pytest.mark.parametrize("name", sorted(REGISTRY_HOSTS))
def test_registry_shape(scanned: Scanned, name: str) -> None:
    host = scanned.hosts[name]
    assert host["error"] is None, host["error"]
    _, expected = REGISTRY_HOSTS[name]
    setting = host["setting"]
    assert {k: setting[k] for k in expected} == expected
    statuses = {r["rule_id"]: r["status"] for r in host["results"]}
    assert (statuses["NATT-001"], statuses["NATT-002"], statuses["NATT-003"]) == VERDICTS[name]
    # Never "compliant" by accident: an invalid DWORD has no effective mode and fails closed.
    if setting["integrity"] == "invalid_value":
        assert setting["effective_mode"] == "unknown" and host["status"] == "fail"


def test_dword_max_is_unsigned_everywhere(scanned: Scanned) -> None:
    text = json.dumps(scanned.hosts["r-dword-max"])
    assert "4294967295" in text and "-1" not in text


@pytest.mark.parametrize(
    ("name", "stray_key", "data"),
    [("r-both-keys", "IPsec", 2), ("r-both-keys-2003", "PolicyAgent", 2)],
)
def test_value_at_both_keys_reports_the_stray_one(scanned: Scanned, name: str, stray_key: str, data: int) -> None:
    stray = scanned.hosts[name]["setting"]["stray"]
    assert [(s["key"].rsplit("\\", 1)[-1], s["data"]) for s in stray] == [(stray_key, data)]


def test_same_facts_give_the_same_record(scanned: Scanned) -> None:
    # Deterministic: hosts with identical registry shapes produce identical settings and verdicts.
    a, b = scanned.hosts["r-sz-2"], scanned.hosts["r-sz-02"]
    assert {k: v for k, v in a["setting"].items() if k != "raw_value"} == {
        k: v for k, v in b["setting"].items() if k != "raw_value"
    }
