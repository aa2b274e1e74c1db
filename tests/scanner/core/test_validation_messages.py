"""Every validation error is listed with its place, and a misspelt key says which one it meant."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.waivers import load_waivers
from scanner.core.validation import did_you_mean
from scanner.core.yamlfile import FileError
from scanner.inputs.config import ConfigError, load_config
from scanner.inputs.inventory import parse_inventory
from scanner.inputs.inventory.validate import InventoryError
from scanner.lab.estate import load_estate
from tests.support.cliproc import run_cli

POLICY = """\
name: t
rules:
  - id: R-1
    title: t
    severty: high
    rationale: r
    remediation: m
    check: {fact: effective_mode, equals: 0}
  - id: R-2
    title: t
    severity: low
    rationale: r
    remediaton: m
    check: {fact: effective_mode, equals: 0}
"""


def test_did_you_mean_only_for_a_close_name() -> None:
    assert did_you_mean("severty", ["severity", "title"]) == " (did you mean 'severity'?)"
    assert did_you_mean("colour", ["severity", "title"]) == ""


def test_a_policy_typo_lists_every_error_and_names_the_typo(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY, encoding="utf-8")
    done = run_cli("policy", "validate", str(path))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines == [
        f"natt-audit: error: invalid: {path}:3:5: rules.0.severity: Field required"
        " (is 'severty' a misspelling of 'severity'?)",
        f"natt-audit: error: {path}:5:14: rules.0.severty: unknown field 'severty' (did you mean 'severity'?)",
        f"natt-audit: error: {path}:9:5: rules.1.remediation: Field required"
        " (is 'remediaton' a misspelling of 'remediation'?)",
        f"natt-audit: error: {path}:13:17: rules.1.remediaton: unknown field 'remediaton'"
        " (did you mean 'remediation'?)",
    ]
    assert "more" not in done.stderr


def test_a_condition_key_typo_still_suggests_through_the_shared_helper(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY.replace("severty", "severity").replace("remediaton", "remediation")
                    .replace("equals: 0}\n  - id: R-2", "equls: 0}\n  - id: R-2"), encoding="utf-8")
    done = run_cli("policy", "validate", str(path))
    assert done.returncode == 2
    assert "unknown key 'equls' (did you mean 'equals'?)" in done.stderr


def test_waivers_list_every_error_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(
        "waivers:\n"
        "  - id: W-1\n"
        "    rules: [NATT-001]\n"
        "    hosts: {names: [a]}\n"
        "    justifcation: pilot\n"
        "    owner: alice\n"
        "    approver: bob\n"
        "    ticket: CHG-1\n"
        "    expirse: 2026-12-31\n",
        encoding="utf-8",
    )
    with pytest.raises(FileError) as info:
        load_waivers(path)
    text = str(info.value)
    assert "(did you mean 'justification'?)" in text
    assert "(did you mean 'expires'?)" in text
    assert "is 'expirse' a misspelling of 'expires'?" in text
    assert all(line.startswith(f"{path}:") for line in text.splitlines())
    assert len(text.splitlines()) == 4


def test_a_lab_estate_typo_is_suggested(tmp_path: Path) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text(
        "accounts:\n  - {username: 'LAB\\auditor', password: 'x'}\n"
        "hosts:\n  - {name: a, latncy_ms: 5}\n  - {name: b, os: win10, faultt: refuse}\n",
        encoding="utf-8",
    )
    with pytest.raises(FileError) as info:
        load_estate(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:4:") and "(did you mean 'latency_ms'?)" in lines[0]
    assert lines[1].startswith(f"{path}:5:") and "(did you mean 'fault'?)" in lines[1]


def test_inventory_yaml_and_csv_typos_are_suggested() -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory("hosts:\n  - name: a\n    adress: 127.0.0.1\n  - {name: b, prot: 5}\n", "inv.yaml", fmt="yaml")
    assert info.value.problems == (
        "inv.yaml:3:13: hosts.0.adress: unknown field 'adress' (did you mean 'address'?)",
        "inv.yaml:4:21: hosts.1.prot: unknown field 'prot' (did you mean 'port'?)",
    )
    with pytest.raises(InventoryError) as info:
        parse_inventory("name,adress\na,127.0.0.1\n", "inv.csv", fmt="csv")
    assert "unknown column 'adress' (did you mean 'address'?)" in str(info.value)


def test_config_typos_are_all_listed_in_line_order(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('inventory = "x.yaml"\nconcurrancy = 4\n[timeouts]\nhots = 3\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path=str(path), environ={})
    assert str(info.value).splitlines() == [
        f"{path}:2: concurrancy: unknown key 'concurrancy' (did you mean 'concurrency'?)"
        " (see docs/config.md for every key)",
        f"{path}:4: timeouts.hots: unknown key 'hots' (did you mean 'host'?) (see docs/config.md for every key)",
    ]
