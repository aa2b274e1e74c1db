"""Every export format: golden files, identifiers on every record, escaping and schema checks."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from functools import cache
from html.parser import HTMLParser
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reports.findings import HOST_RULE_ID, Finding, flatten
from reports.formats import cef, csv_report, ecs, hec, html_report, jsonl, junit, ocsf
from reports.hosts import Hosts, Report
from reports.model import ReportHeader
from scanner.core.formats import Format
from scanner.core.models import HostError, OsInfo, Stage
from scanner.core.results import Status, event_uid, finding_uid
from tests.support.cefparse import CefError, parse, shown
from tests.support.sample_report import HOSTILE_CAPTION, make_sample_report, rendered, with_hosts

EXPORT_RENDERERS = {
    f.value: (lambda r, f=f: rendered(r, f)) for f in Format if f not in (Format.CONSOLE, Format.JSON)
}


def text_of(render: Callable[[ReportHeader, Hosts, io.StringIO], None], report: Report) -> str:
    """Return what one format module's `render` writes for the report."""
    out = io.StringIO()
    render(report.header, report.hosts, out)
    return out.getvalue()
EXTENSIONS = {
    "jsonl": "jsonl",
    "csv": "csv",
    "cef": "cef",
    "ocsf": "ocsf.jsonl",
    "ecs": "ecs.jsonl",
    "hec": "hec.jsonl",
    "junit": "junit.xml",
    "html": "html",
}


@pytest.fixture(scope="module")
def report() -> Report:
    """Return the hostile sample report."""
    return make_sample_report()


@pytest.fixture(scope="module")
def findings(report: Report) -> list[Finding]:
    """Return the flattened sample report."""
    return list(flatten(report.header, report.hosts))


@pytest.mark.parametrize("name", sorted(EXPORT_RENDERERS))
def test_golden(name: str, report: Report, export_golden: Callable[[str, str], None]) -> None:
    text = EXPORT_RENDERERS[name](report)
    assert text.endswith("\n")
    assert EXPORT_RENDERERS[name](report) == text  # deterministic
    export_golden(f"report.{EXTENSIONS[name]}", text)


def test_flatten_covers_every_host_and_result(report: Report, findings: list[Finding]) -> None:
    expected = sum(max(1, len(h.results)) for h in report.hosts)
    assert len(findings) == expected
    assert {f.host for f in findings} == {h.name for h in report.hosts}
    assert {f.status for f in findings} == set(Status)
    timeout = [f for f in findings if f.host == "srv-timeout"]
    assert len(timeout) == 1 and timeout[0].rule_id == HOST_RULE_ID
    assert (timeout[0].error_stage, timeout[0].error_reason) == ("timeout", "host_deadline")
    refused = [f for f in findings if f.host == "srv-refused"]
    assert len(refused) == 3 and all(f.error_reason == "refused" for f in refused)
    for f in findings:
        assert f.finding_uid == finding_uid(f.rule_id, f.host)
        assert f.event_uid == event_uid(f.finding_uid, report.header.scan.id)
        assert f.time_ms > 10**12
    assert len({f.event_uid for f in findings}) == len(findings)


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_ids_in_every_line_format(report: Report, findings: list[Finding]) -> None:
    uids = [f.event_uid for f in findings]
    assert [r["event_uid"] for r in _json_lines(text_of(jsonl.render, report))] == uids
    assert [r["metadata"]["uid"] for r in _json_lines(text_of(ocsf.render, report))] == uids
    assert [r["event"]["id"] for r in _json_lines(text_of(ecs.render, report))] == uids
    assert [r["event"]["event_id"] for r in _json_lines(text_of(hec.render, report))] == uids
    assert [parse(line)[1]["externalId"] for line in text_of(cef.render, report).splitlines()] == uids
    rows = list(csv.DictReader(io.StringIO(text_of(csv_report.render, report))))
    assert [r["event_uid"] for r in rows] == uids
    assert all(u in text_of(junit.render, report) and u in text_of(html_report.render, report) for u in uids)


def test_jsonl_keeps_host_text(report: Report) -> None:
    text = text_of(jsonl.render, report)
    records = _json_lines(text)
    stray = next(r for r in records if r["host"] == "srv-stray")
    assert stray["os_caption"] == HOSTILE_CAPTION
    assert stray["tags"] == {"owner": "ops\nteam", "site": "[bold red]PASS[/]"}
    assert "\x1b" not in text and "\u202e" not in text and "\x9b" not in text


def test_csv_neutralises_formulas() -> None:
    for cell in ("=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "\nx"):
        assert csv_report.neutralise(cell) == "'" + cell
    assert csv_report.neutralise("srv01") == "srv01"


def test_csv_cells_from_hostile_hosts(report: Report) -> None:
    first = next(iter(report.hosts))
    hostile = with_hosts(
        report, [first.model_copy(update={"name": '=HYPERLINK("http://evil","x")', "address": "@evil", "port": 5985})]
    )
    rows = list(csv.reader(io.StringIO(text_of(csv_report.render, hostile))))
    assert rows[0] == list(csv_report.COLUMNS)
    for row in rows[1:]:
        assert len(row) == len(csv_report.COLUMNS)
        assert row[csv_report.COLUMNS.index("host")] == '\'=HYPERLINK("http://evil","x")'
        assert row[csv_report.COLUMNS.index("address")] == "'@evil"
        assert not any(cell.startswith(csv_report.FORMULA_PREFIXES) for cell in row)


def test_cef_round_trip_on_sample(findings: list[Finding], report: Report) -> None:
    lines = text_of(cef.render, report).splitlines()
    assert len(lines) == len(findings)
    for line, f in zip(lines, findings, strict=True):
        header, ext = parse(line)
        assert header[1:6] == ["natt-audit", "natt-audit", f.tool_version, f.rule_id, f.rule_title]
        assert int(header[6]) == cef.CEF_SEVERITY[f.severity]
        assert ext["dhost"] == shown(f.host) and ext["msg"] == shown(f.message)
        assert ext["cs4"] == f.finding_uid and ext["cs5"] == f.scan_id
        assert ext["outcome"] == ("failure" if f.status is Status.FAIL else ext["outcome"])
        assert int(ext["rt"]) == f.time_ms
        if f.os_caption is not None:
            assert ext["flexString2"] == shown(f.os_caption)
        if f.error_stage is not None:
            assert ext["reason"].startswith(f"{f.error_stage}/{f.error_reason}: ")


def test_cef_escaping_rules() -> None:
    assert cef.escape_header("a\\b|c=d") == "a\\\\b\\|c=d"
    assert cef.escape_extension("a\\b=c|d\ne\rf") == "a\\\\b\\=c|d\\ne\\rf"
    assert cef.escape_header("x\ny") == "x y"


def test_cef_parser_is_strict() -> None:
    for bad in (
        "CEF:0|a|b|c|d|e|1|msg=a=b",
        "CEF:0|a|b|c|d|e|1|msg=a\\tb",
        "CEF:0|a|b|c|d|e\n|1|msg=x",
        "CEF:0|a|b|c|d|e",
        "CEF:0|a|b|c|d|e|1|msg=x msg=y",
    ):
        with pytest.raises(CefError):
            parse(bad)


def _with_host_text(report: Report, name: str, caption: str, message: str) -> Report:
    host = next(iter(report.hosts))
    os = OsInfo(version="10.0.19045", caption=caption)
    error = HostError(stage=Stage.PARSE, reason="soap_fault", message=message)
    return with_hosts(report, [host.model_copy(update={"name": name, "os": os, "error": error})])


# Any text a host can send, surrogates excluded (they are not UTF-8; flattening spells them out).
HOST_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=HOST_TEXT, caption=HOST_TEXT, message=HOST_TEXT)
def test_cef_any_host_text_survives(report: Report, name: str, caption: str, message: str) -> None:
    changed = _with_host_text(report, name, caption, message)
    # CEF records are LF-terminated; str.splitlines would also split on \x1c-\x1e, NEL, U+2028
    lines = text_of(cef.render, changed).removesuffix("\n").split("\n")
    assert len(lines) == len(next(iter(changed.hosts)).results)
    for line in lines:
        _header, ext = parse(line)
        # the text a host sent, with ESC, C1, bidi and other unsafe characters spelled out
        assert ext["dhost"] == shown(name)
        assert ext["flexString2"] == shown(caption)
        assert ext["reason"] == f"parse/soap_fault: {shown(message)}"


@settings(max_examples=40, deadline=None)
@given(text=st.text(st.sampled_from("ab\\=|\n\r é"), min_size=1000, max_size=1200))
def test_cef_truncates_before_escaping(text: str) -> None:
    value = cef.truncate("msg", text)
    assert value == text[:1023]
    ext = parse("CEF:0|v|p|1|r|n|1|msg=" + cef.escape_extension(value))[1]
    assert ext["msg"] == text[:1023]


@cache
def _ocsf_validator() -> jsonschema.protocols.Validator:
    from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

    schema = OcsfJsonSchemaEmbedded(get_ocsf_schema("1.8.0")).get_class_schema("compliance_finding")
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_ocsf_validates_against_1_8_0(report: Report, findings: list[Finding]) -> None:
    validator = _ocsf_validator()
    events = _json_lines(text_of(ocsf.render, report))
    assert len(events) == len(findings)
    for event, f in zip(events, findings, strict=True):
        errors = sorted(validator.iter_errors(event), key=str)
        assert not errors, [e.message for e in errors]
        assert event["class_uid"] == 2003 and event["category_uid"] == 2
        assert event["type_uid"] == 200300 + event["activity_id"]
        assert event["time"] > 10**12
        assert event["metadata"]["version"] == "1.8.0"
        assert event["finding_info"]["uid"] == f.finding_uid
        assert event["finding_info"]["analytic"]["uid"] == f.rule_id
    stray = next(e for e in events if e["device"]["hostname"] == "srv-stray")
    assert stray["device"]["os"]["name"] == HOSTILE_CAPTION


def test_ocsf_schema_rejects_a_broken_event(report: Report) -> None:
    event = _json_lines(text_of(ocsf.render, report))[0]
    del event["finding_info"]
    assert list(_ocsf_validator().iter_errors(event))


def test_ecs_posture_fields(report: Report) -> None:
    docs = _json_lines(text_of(ecs.render, report))
    for doc in docs:
        assert doc["event"]["kind"] == "state" and doc["event"]["category"] == ["configuration"]
    evaluations = {d["natt_audit"]["status"]: d.get("result", {}).get("evaluation") for d in docs}
    assert evaluations["pass"] == "passed" and evaluations["fail"] == "failed"
    binary = next(d for d in docs if d["host"]["name"] == "srv-binary")
    assert binary["registry"]["data"] == {"type": "REG_BINARY", "bytes": "AgAAAA=="}
    invalid = next(d for d in docs if d["host"]["name"] == "srv-invalid-value")
    assert invalid["registry"]["data"]["strings"] == ["4294967295"]
    assert invalid["registry"]["hive"] == "HKLM"


def test_hec_events_have_cim_fields(report: Report) -> None:
    for event in _json_lines(text_of(hec.render, report)):
        assert set(event) >= {"time", "host", "source", "sourcetype", "event"}
        body = event["event"]
        for field in ("dest", "signature_id", "signature", "severity", "category", "vendor_product"):
            assert field in body
        assert isinstance(event["time"], float) and event["time"] > 10**9


def test_junit_is_wellformed_and_counts(report: Report, findings: list[Finding]) -> None:
    root = ET.fromstring(text_of(junit.render, report))
    suites = root.findall("testsuite")
    assert len(suites) == len(report.hosts)
    assert int(root.get("tests", "0")) == len(findings)
    assert int(root.get("failures", "0")) == sum(f.status is Status.FAIL for f in findings)
    assert int(root.get("errors", "0")) == sum(f.status is Status.ERROR for f in findings)
    stray = next(s for s in suites if s.get("name") == "srv-stray")
    assert stray.find("testcase/failure") is not None
    out = stray.find("testcase/system-out")
    assert out is not None and "\x1b" not in (out.text or "") and "\\x1b" in (out.text or "")


@settings(max_examples=100, deadline=None)
@given(name=HOST_TEXT, message=HOST_TEXT)
def test_junit_always_parses(report: Report, name: str, message: str) -> None:
    changed = _with_host_text(report, name or "x", "c", message)
    root = ET.fromstring(text_of(junit.render, changed))
    assert root.find("testsuite") is not None


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.refs += [v or "" for k, v in attrs if k in ("src", "href", "action", "srcset", "data")]


def test_html_self_contained_and_escaped(report: Report) -> None:
    page = text_of(html_report.render, report)
    parser = _Refs()
    parser.feed(page)
    assert not [r for r in parser.refs if re.match(r"\s*(https?:)?//", r, re.I)]
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", page, re.I)
    assert "script" not in parser.tags and "link" not in parser.tags and "img" not in parser.tags
    assert "[bold red]PASS[/]" in page  # shown as text
    assert "\x1b" not in page and "\u202e" not in page and "\\u202e" in page
    assert "<b>" in page and "Needs attention" in page


def test_html_escapes_markup_in_host_names(report: Report) -> None:
    changed = _with_host_text(report, '<img src="https://evil/x.png" onerror=alert(1)>', "c", "m")
    page = text_of(html_report.render, changed)
    assert "<img" not in page and "&lt;img src=&quot;https://evil/x.png&quot;" in page
