"""JSON renderer: deterministic, lossless for host text, valid against the published schema."""

from __future__ import annotations

import io
import json
import re
import sys
import unicodedata
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reports.formats.json_report import render_json as write_json
from reports.formats.json_report import render_json_whole, to_plain
from reports.hosts import MemoryHosts, Report, parse_report
from reports.model import ReportDocument, ReportHeader
from reports.schema import DRAFT, SCHEMA_ID, report_json_schema, report_json_schema_text
from scanner.core.formats import Format
from scanner.core.models import HostError, Observation, Stage
from tests.support.sample_report import HOSTILE_CAPTION, SCAN, assemble, rendered, target


def render_json(report: Report) -> str:
    """Return the `-f json` text of the report (written host by host)."""
    return rendered(report, Format.JSON)

SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")
FIELDS = {
    "": ["schema_version", "tool", "scan", "summary", "hosts", "drift", "waivers", "inventory"],
    "inventory": ["sources", "os_version_disagreements"],
    "inventory_source": ["type", "name", "hosts", "skipped"],
    "tool": ["name", "version"],
    "scan": ["id", "started_at", "finished_at", "policies", "inventory", "interrupted", "policy_refs"],
    "summary": ["hosts_total", "hosts_by_status", "coverage", "modes", "requests_total", "sites", "auth_rejected"],
    "host": ["name", "address", "port", "tags", "status", "requests", "os", "setting", "error", "results"],
    "os": ["version", "build", "service_pack", "caption", "source"],
    "result": ["rule_id", "title", "severity", "status", "message", "finding_id", "waiver"],
    "error": ["stage", "reason", "message"],
}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    """Return a validator for the report schema."""
    schema = report_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_issue_field_names_and_order(sample_report: Report) -> None:
    doc = json.loads(render_json(sample_report))
    assert list(doc) == FIELDS[""]
    assert list(doc["tool"]) == FIELDS["tool"]
    assert list(doc["scan"]) == FIELDS["scan"]
    assert list(doc["summary"]) == FIELDS["summary"]
    assert list(doc["inventory"]) == FIELDS["inventory"]
    assert all(list(s) == FIELDS["inventory_source"] for s in doc["inventory"]["sources"])
    for host in doc["hosts"]:
        assert list(host) == FIELDS["host"]
        assert host["os"] is None or list(host["os"]) == FIELDS["os"]
        assert host["error"] is None or list(host["error"]) == FIELDS["error"]
        assert all(list(r) == FIELDS["result"] for r in host["results"])
        if host["setting"] is not None:
            for key in (
                "applicable_key",
                "present",
                "raw_type",
                "raw_value",
                "effective_mode",
                "integrity",
                "stray",
            ):
                assert key in host["setting"]


def test_dict_fields_are_sorted_and_lists_keep_report_order(sample_report: Report) -> None:
    doc = json.loads(render_json(sample_report))
    assert list(doc["summary"]["hosts_by_status"]) == ["error", "fail", "not_applicable", "pass", "waived"]
    assert list(doc["summary"]["modes"]) == ["0", "1", "2", "not_applicable", "unknown"]
    host = next(iter(sample_report.hosts)).model_copy(update={"tags": {"z": "1", "a": "2", "m": "3"}})
    plain = to_plain(host)
    assert isinstance(plain, dict)
    assert isinstance(plain["tags"], dict)
    assert list(plain["tags"]) == ["a", "m", "z"]
    assert [h["name"] for h in doc["hosts"]] == [h.name for h in sample_report.hosts]


def test_format_bytes(sample_report: Report) -> None:
    text = render_json(sample_report)
    assert text.endswith("}\n")
    assert not text.endswith("\n\n")
    assert text.startswith('{\n  "schema_version": "1.0",\n  "tool": {\n    "name"')
    assert "专业版" in text  # UTF-8, not \u escapes
    text.encode("utf-8")  # always encodable
    assert text == render_json(sample_report)
    document = ReportDocument(**dict(sample_report.header), hosts=list(sample_report.hosts))
    assert json.loads(text) == document.model_dump(mode="json")  # nothing lost, nothing added


def test_dwords_are_unsigned_and_host_text_is_kept_exactly(sample_report: Report) -> None:
    text = render_json(sample_report)
    doc = json.loads(text)
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert hosts["srv-invalid-value"]["setting"]["raw_value"] == 4294967295
    assert hosts["srv-stray"]["os"]["caption"] == HOSTILE_CAPTION
    assert hosts["srv-stray"]["tags"] == {"owner": "ops\nteam", "site": "[bold red]PASS[/]"}
    for raw in ("\x1b", "\x07", "\x9b", "\x7f", "\u202e", "\u200b", "\ufeff"):
        assert raw not in text  # escaped in the file ...
    assert "\\u001b[31m" in text
    assert "\\u202eevil\\u202c" in text  # ... and restored by any JSON parser


@settings(max_examples=200, deadline=None)
# Any code point, lone surrogates included; a high surrogate directly followed by a low one is
# left out: JSON (RFC 8259 section 7) reads that escaped pair back as one astral character.
@given(st.text(st.characters(exclude_categories=())).filter(lambda s: not SURROGATE_PAIR.search(s)))
def test_any_host_text_round_trips_and_the_file_is_plain_utf8(caption: str) -> None:
    observation = Observation(
        target=target("h", 5985, note=caption),
        error=HostError(stage=Stage.PARSE, reason="bad_xml", message=caption),
    )
    report = assemble([observation], {})
    text = render_json(report)
    data = text.encode("utf-8")  # lone surrogates are \u escapes, so this never fails
    doc = json.loads(data.decode("utf-8"))
    assert doc["hosts"][0]["error"]["message"] == caption
    assert doc["hosts"][0]["tags"] == {"note": caption}
    assert all(ch not in text for ch in "\x1b\x7f\x85\u2028\u202e\u2066")


def test_sample_report_validates_against_the_schema(
    sample_report: Report, validator: jsonschema.Draft202012Validator
) -> None:
    validator.validate(json.loads(render_json(sample_report)))


def test_a_report_written_before_policy_refs_still_validates_and_parses(
    sample_report: Report, validator: jsonschema.Draft202012Validator
) -> None:
    doc = json.loads(render_json(sample_report))
    del doc["scan"]["policy_refs"]
    validator.validate(doc)
    assert parse_report(json.dumps(doc)).header.scan.policy_refs == []


def test_empty_and_interrupted_reports_validate(validator: jsonschema.Draft202012Validator) -> None:
    empty = assemble([], {}, SCAN.model_copy(update={"interrupted": True, "inventory": None}))
    validator.validate(json.loads(render_json(empty)))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("schema_version",), "2.0"),
        (("summary", "coverage"), 1.5),
        (("summary", "hosts_by_status", "pass"), -1),
        (("hosts", 0, "status"), "ok"),
        (("hosts", 0, "setting", "effective_mode"), 3),
        (("hosts", 0, "port"), 0),
        (("hosts", 0, "results", 0, "severity"), "urgent"),
        (("hosts", 0, "surprise"), 1),
    ],
)
def test_schema_rejects_broken_reports(
    sample_report: Report,
    validator: jsonschema.Draft202012Validator,
    path: tuple[Any, ...],
    value: object,
) -> None:
    doc = json.loads(render_json(sample_report))
    # hosts[0] is srv-auth (error, no setting): use a read host for setting paths.
    doc["hosts"].sort(key=lambda h: h["setting"] is None)
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    assert not validator.is_valid(doc)


def test_schema_requires_every_field_and_every_status_key(
    sample_report: Report, validator: jsonschema.Draft202012Validator
) -> None:
    doc = json.loads(render_json(sample_report))
    del doc["hosts"][0]["error"]
    assert not validator.is_valid(doc)
    doc = json.loads(render_json(sample_report))
    del doc["summary"]["hosts_by_status"]["waived"]
    assert not validator.is_valid(doc)


def test_schema_identity_and_text() -> None:
    schema = report_json_schema()
    assert schema["$schema"] == DRAFT == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID
    assert schema["title"] == "natt-audit scan report"
    assert json.loads(report_json_schema_text()) == schema
    assert report_json_schema_text() == report_json_schema_text()


def test_every_control_and_format_character_is_escaped_in_the_file() -> None:
    # "." between characters: a high+low surrogate pair written as two \u escapes would (rightly)
    # be read back as one astral character.
    chars = [
        chr(cp)
        for cp in range(sys.maxunicode + 1)
        if unicodedata.category(chr(cp)) in {"Cc", "Cf", "Cs", "Zl", "Zp"}
    ]
    dangerous = ".".join(chars)
    observation = Observation(
        target=target("h"), error=HostError(stage=Stage.PARSE, reason="x", message=dangerous)
    )
    text = render_json(assemble([observation], {}))
    # "\n" occurs raw only as layout between lines; inside strings json.dumps writes \n.
    assert [f"U+{ord(ch):04X}" for ch in chars if ch in text] == ["U+000A"]
    assert '"message": "\\u0000.\\u0001' in text
    assert json.loads(text)["hosts"][0]["error"]["message"] == dangerous


def test_lone_surrogates_become_escapes_not_encoding_errors() -> None:
    observation = Observation(
        target=target("h\udc80"), error=HostError(stage=Stage.PARSE, reason="x", message="a\ud800b\udfffc")
    )
    text = render_json(assemble([observation], {}))
    text.encode("utf-8")
    assert '"message": "a\\ud800b\\udfffc"' in text
    assert json.loads(text)["hosts"][0]["name"] == "h\udc80"


def test_host_by_host_text_equals_one_whole_dump(sample_report: Report) -> None:
    header, hosts = sample_report
    assert render_json(sample_report) == render_json_whole(header, hosts)
    empty = Report(header, MemoryHosts.of([]))
    assert render_json(empty) == render_json_whole(header, [])
    assert json.loads(render_json(empty))["hosts"] == []


def test_the_json_renderer_writes_one_host_at_a_time(sample_report: Report) -> None:
    writes: list[str] = []

    class Recorder(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return super().write(text)

    out = Recorder()
    write_json(sample_report.header, sample_report.hosts, out)
    assert out.getvalue() == render_json(sample_report)
    assert len(writes) == len(sample_report.hosts) + 1  # each host, then the closing frame
    assert all(text.count('"results": [') <= 1 for text in writes)  # never two hosts in one piece


def test_a_written_report_reads_back_as_the_same_header_and_hosts(sample_report: Report) -> None:
    text = render_json(sample_report)
    header, hosts = parse_report(text)
    assert header == sample_report.header
    assert list(hosts) == list(sample_report.hosts)
    assert render_json(Report(header, hosts)) == text


def test_the_header_is_the_document_without_its_hosts() -> None:
    document = list(ReportDocument.model_fields)
    assert [name for name in document if name != "hosts"] == list(ReportHeader.model_fields)
