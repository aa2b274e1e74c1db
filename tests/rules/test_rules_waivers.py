"""Waivers: scoped, justified, expiring; only failures are waived; summaries for the report."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from rules.evaluate import evaluate
from rules.loader import builtin_policy
from rules.waivers import apply_waivers, load_waivers, summarize, waivers_json_schema
from scanner.core.results import Status
from scanner.core.yamlfile import FileError
from tests.support.rules_helpers import WIN10, failed, observe, target

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "waivers.yaml"
TODAY = date(2026, 11, 27)

ONE = """\
waivers:
  - id: W-1
    rules: [NATT-001]
    hosts: {{names: [Host1]}}
    justification: needed for the L2TP pilot
    owner: alice
    approver: bob
    ticket: CHG-1
    expires: {expires}
"""


def waivers(tmp_path: Path, text: str):
    """Write and load a waivers file."""
    path = tmp_path / "w.yaml"
    path.write_text(text, "utf-8")
    return load_waivers(path)


def mode2_results(name: str = "host1", **kw):
    """Baseline results for a mode-2 Windows 10 host."""
    tgt = target(name=name, **kw)
    return tgt, evaluate(observe(WIN10, ("REG_DWORD", 2), tgt=tgt), [builtin_policy("baseline")])


def test_covered_failure_is_waived_and_keeps_evidence(tmp_path):
    ws = waivers(tmp_path, ONE.format(expires="2026-12-31"))
    tgt, results = mode2_results()
    out = apply_waivers(tgt, results, ws, today=TODAY)
    r = out[0]
    assert r.status is Status.WAIVED
    assert "waived by W-1 (ticket CHG-1, owner alice, approver bob, expires 2026-12-31)" in r.message
    assert "needed for the L2TP pilot" in r.message
    assert "evidence: effective_mode=2" in r.message
    assert (r.rule_id, r.finding_id, r.severity) == (
        results[0].rule_id,
        results[0].finding_id,
        results[0].severity,
    )
    assert out[1:] == results[1:]  # other rules untouched


def test_waiver_valid_through_its_expiry_day_then_expired(tmp_path):
    ws = waivers(tmp_path, ONE.format(expires="2026-11-27"))
    tgt, results = mode2_results()
    assert apply_waivers(tgt, results, ws, today=TODAY)[0].status is Status.WAIVED
    after = apply_waivers(tgt, results, ws, today=date(2026, 11, 28))[0]
    assert after.status is Status.FAIL
    assert after.message.endswith(
        "[waiver W-1 (ticket CHG-1, owner alice, approver bob, expires 2026-11-27) expired]"
    )


def test_other_hosts_and_other_statuses_untouched(tmp_path):
    ws = waivers(tmp_path, ONE.format(expires="2026-12-31"))
    tgt, results = mode2_results("host2")
    assert apply_waivers(tgt, results, ws, today=TODAY) == results
    err = evaluate(failed(), [builtin_policy("baseline")])
    assert apply_waivers(target(), err, ws, today=TODAY) == err  # an error is never waived
    tgt = target()
    ok = evaluate(observe(WIN10, None, tgt=tgt), [builtin_policy("baseline")])
    assert apply_waivers(tgt, ok, ws, today=TODAY) == ok


@pytest.mark.parametrize(
    ("hosts", "name", "tags", "covered"),
    [
        ("{glob: 'lab-*'}", "LAB-7", {}, True),
        ("{glob: 'lab-*'}", "web-1", {}, False),
        ("{tags: {role: {equals: vpn}}}", "x", {"role": "vpn"}, True),
        ("{tags: {role: {in: [vpn, dc]}}}", "x", {"role": "web"}, False),
        ("{glob: 'lab-*', tags: {site: {equals: east}}}", "lab-1", {"site": "west"}, False),  # all must hold
    ],
)
def test_host_selectors(tmp_path, hosts, name, tags, covered):
    ws = waivers(tmp_path, ONE.format(expires="2026-12-31").replace("{names: [Host1]}", hosts))
    tgt, results = mode2_results(name, tags=tags)
    assert (apply_waivers(tgt, results, ws, today=TODAY)[0].status is Status.WAIVED) is covered


def test_longest_valid_waiver_wins(tmp_path):
    text = ONE.format(expires="2026-12-31") + ONE.format(expires="2027-06-30").split("waivers:\n")[1].replace(
        "W-1", "W-2"
    )
    ws = waivers(tmp_path, text)
    tgt, results = mode2_results()
    assert "waived by W-2" in apply_waivers(tgt, results, ws, today=TODAY)[0].message


@pytest.mark.parametrize(
    ("old", "new", "line", "needle"),
    [
        ("    justification: needed for the L2TP pilot\n", "", 2, "justification"),
        ("    expires: 2026-12-31\n", "", 2, "expires"),
        ("expires: 2026-12-31", "expires: next week", 9, "expires"),
        ("justification: needed for the L2TP pilot", "justification: '  '", 2, "blank"),
        ("{names: [Host1]}", "{}", 4, "at least one"),
        ("rules: [NATT-001]", "rules: []", 3, "rules"),
        ("    owner: alice\n", "    owner: alice\n    colour: red\n", 7, "colour"),
    ],
)
def test_refused_with_position(tmp_path, old, new, line, needle):
    text = ONE.format(expires="2026-12-31")
    assert old in text
    with pytest.raises(FileError) as info:
        waivers(tmp_path, text.replace(old, new))
    assert info.value.line == line, str(info.value)
    assert needle in info.value.message


def test_duplicate_waiver_id_refused(tmp_path):
    text = ONE.format(expires="2026-12-31") + ONE.format(expires="2026-12-31").split("waivers:\n")[1]
    with pytest.raises(FileError) as info:
        waivers(tmp_path, text)
    assert (info.value.line, info.value.column) == (10, 9)
    assert "duplicate waiver id 'W-1' (first on line 2)" in info.value.message


def test_summary_expiring_expired_unmatched():
    ws = load_waivers(EXAMPLE)
    hosts = [target(name="vpn-legacy01.corp.example"), target(name="web1")]
    s = summarize(ws, hosts, ["ROLE-VPN", "ROLE-ALL"], today=date(2026, 12, 20))
    assert [r.label for r in s.expiring] == ["W-2026-017"]  # within 14 days
    assert s.expired == ()
    assert [r.label for r in s.unmatched] == ["W-2026-021"]  # no lab-* host
    s = summarize(ws, hosts, ["ROLE-VPN"], today=date(2027, 1, 2), warn_days=100)
    assert [r.label for r in s.expired] == ["W-2026-017"]
    assert [r.label for r in s.expiring] == ["W-2026-021"]
    s = summarize(ws, hosts, ["NATT-001"], today=TODAY)
    assert [r.label for r in s.unmatched] == ["W-2026-017", "W-2026-021"]  # no loaded rule it names
    assert summarize(None, hosts, [], today=TODAY).unmatched == ()


def test_json_schema_accepts_example():
    schema = waivers_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    data = yaml.safe_load(EXAMPLE.read_text("utf-8"))
    for w in data["waivers"]:
        w["expires"] = w["expires"].isoformat()
    jsonschema.validate(data, schema)
    data["waivers"][0].pop("justification")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)
