"""docs/reliability.md#policy-and-waiver-input: hostile files are refused before scanning in bounded time and memory."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rules.loader import resolve_policies
from rules.waivers import load_waivers
from scanner.core.yamlfile import FileError
from tests.peers.hostile_lab import CREDS
from tests.support.cliproc import natt_audit

RULE = """  - id: {id}
    title: t
    severity: high
    rationale: r
    remediation: m
    check: {{fact: effective_mode, not_equals: 2}}
"""
GOOD_POLICY = "name: p\nrules:\n" + RULE.format(id="R-1")
GOOD_WAIVERS = """waivers:
  - id: W-1
    rules: [NATT-001]
    hosts: {names: [srv01]}
    justification: because
    expires: 2030-01-01
"""
ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
    f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n"
    for i in range(8)
)
TEN_MB = "name: p\nrules:\n" + RULE.format(id="R-1") + "# " + "x" * (10 * 1024 * 1024) + "\n"

# case -> (policy text, waivers text, words the message must hold, line it must name or None)
CASES: dict[str, tuple[str, str, str, int | None]] = {
    "duplicate-rule-id": (GOOD_POLICY + RULE.format(id="R-1"), "", "duplicate rule id", 9),
    "duplicate-key": ("name: p\nname: q\nrules:\n" + RULE.format(id="R-1"), "", "duplicate", 2),
    "unknown-field": (GOOD_POLICY + "    colour: red\n", "", "colour", 9),
    "python-tag": ("name: !!python/object/apply:os.system ['id']\nrules: []\n", "", "tag", 1),
    "alias-bomb": (ALIAS_BOMB, "", "alias", None),
    "ten-megabytes": (TEN_MB, "", "limit", None),
    "waiver-duplicate-key": ("", GOOD_WAIVERS + "    expires: 2031-01-01\n", "duplicate", 7),
    "waiver-unknown-field": ("", GOOD_WAIVERS + "    colour: red\n", "colour", None),
    "waiver-python-tag": ("", "waivers: !!python/object/new:os.system [id]\n", "tag", 1),
    "waiver-alias-bomb": ("", ALIAS_BOMB, "alias", None),
    "waiver-ten-megabytes": ("", GOOD_WAIVERS + "# " + "x" * (10 * 1024 * 1024) + "\n", "limit", None),
    "waiver-duplicate-id": ("", GOOD_WAIVERS + GOOD_WAIVERS.removeprefix("waivers:\n"), "duplicate waiver id", 7),
}


def _bounded(load: Callable[[], Any]) -> tuple[BaseException, float, int]:
    tracemalloc.start()
    started = time.monotonic()
    try:
        load()
    except FileError as exc:
        caught: BaseException = exc
    else:
        raise AssertionError("the file was accepted")
    finally:
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return caught, elapsed, peak


def test_the_good_files_load(tmp_path: Path) -> None:
    policy, waivers = tmp_path / "p.yaml", tmp_path / "w.yaml"
    policy.write_text(GOOD_POLICY, encoding="utf-8")
    waivers.write_text(GOOD_WAIVERS, encoding="utf-8")
    assert [p.name for p in resolve_policies([str(policy)])] == ["p"]
    assert len(load_waivers(waivers).waivers) == 1


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_in_bounded_time_and_memory(tmp_path: Path, case: str) -> None:
    policy_text, waiver_text, words, line = CASES[case]
    path = tmp_path / "input.yaml"
    path.write_text(policy_text or waiver_text, encoding="utf-8")
    load: Callable[[], Any] = (lambda: resolve_policies([str(path)])) if policy_text else (lambda: load_waivers(path))
    exc, elapsed, peak = _bounded(load)
    message = str(exc)
    assert str(path) in message
    assert words in message.lower() or words in message, message
    if line is not None:
        assert f"{path}:{line}:" in message, message
    assert elapsed < 2.0, f"{case} took {elapsed:.2f}s"
    assert peak < 50 * 1024 * 1024, f"{case} used {peak / 1e6:.1f} MB"


@pytest.mark.parametrize("case", ["python-tag", "alias-bomb"])
def test_scan_exits_2_before_contacting_any_host(tmp_path: Path, case: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(CASES[case][0], encoding="utf-8")
    inventory = tmp_path / "hosts.txt"
    inventory.write_text("127.0.0.1:9\n", encoding="utf-8")
    out = tmp_path / "r.json"
    proc = natt_audit("scan", "-i", str(inventory), "-p", str(policy), "-f", "json", "-o", str(out), env=CREDS)
    assert proc.returncode == 2, proc.stderr
    assert str(policy).encode() in proc.stderr
    assert not out.exists() and b"scanned" not in proc.stderr
