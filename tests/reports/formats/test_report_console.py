"""Console renderer: escaping of host text (docs/reliability.md#host-supplied-text), ordering, compaction, purity."""

from __future__ import annotations

import io
import re
import sys
import time
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.text import Text

from reports.formats.console import PASS_ROWS_LIMIT
from reports.formats.console import render_console as write_console
from reports.hosts import Report
from reports.model import HostReport
from scanner.core.models import HostError, Observation, OsInfo, Stage
from scanner.core.results import Status
from scanner.core.sanitize import console_text as safe_text
from scanner.core.sanitize import visible
from tests.support.sample_report import (
    CHINESE_CAPTION,
    HOSTILE_CAPTION,
    assemble,
    make_sample_report,
    target,
    with_hosts,
)

ESC = "\x1b"
C1 = re.compile("[\x80-\x9f]")
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
SGR = re.compile(r"\x1b\[[0-9;]*m")
DANGEROUS_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
BASE = make_sample_report()
# Any code point, lone surrogates included, with the hostile ones drawn often.
ALPHABET = st.one_of(
    st.characters(exclude_categories=()),
    st.sampled_from("\x1b[]=/\\\x07\x9b\x85\x7f\u202e\u2066\u200b\ufeff\n\r\t\ud800\udc80"),
)


def render_console(
    report: Report, *, color: bool, width: int | None = None, max_pass_rows: int = PASS_ROWS_LIMIT
) -> str:
    """Return what the console renderer writes for the report."""
    out = io.StringIO()
    write_console(report.header, report.hosts, out, color=color, width=width, max_pass_rows=max_pass_rows)
    return out.getvalue()


@pytest.fixture(scope="module")
def report() -> Report:
    """Return the sample report."""
    return make_sample_report()


def with_caption(report: Report, caption: str, *, name: str = "srv-stray") -> Report:
    """Return the report with one host's caption replaced."""
    hosts = [
        h.model_copy(update={"os": OsInfo(version="10.0.19045", caption=caption)}) if h.name == name else h
        for h in report.hosts
    ]
    return with_hosts(report, hosts)


# ---- safe_text / visible -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mred", "\\x1b[31mred"),
        ("\x1b]8;;http://evil\x07x", "\\x1b]8;;http://evil\\x07x"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("\x9b2J", "\\x9b2J"),
        ("\x7f", "\\x7f"),
        ("\u202eevil\u202c", "\\u202eevil\\u202c"),
        ("\u2066x\u2069", "\\u2066x\\u2069"),
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("lone\udc80", "lone\\udc80"),
        ("[bold red]PASS[/]", "[bold red]PASS[/]"),
        (CHINESE_CAPTION, CHINESE_CAPTION),
        ("back\\slash", "back\\slash"),
    ],
)
def test_visible_escapes_exactly_what_a_terminal_would_act_on(raw: str, shown: str) -> None:
    assert visible(raw) == shown


def test_visible_truncates_before_escaping_and_says_how_much() -> None:
    assert visible("\x1b" * 5, limit=2) == "\\x1b\\x1b… (+3 chars)"
    assert visible("short", limit=10) == "short"


def test_safe_text_is_a_text_whose_markup_stays_literal() -> None:
    text = safe_text("[bold red]PASS[/] [link=http://evil]x[/link]", "bold")
    assert isinstance(text, Text)
    assert text.plain == "[bold red]PASS[/] [link=http://evil]x[/link]"
    assert [span.style for span in text.spans] == []
    assert text.style == "bold"


def test_escape_class_covers_every_control_and_format_character_of_this_python() -> None:
    # Guards the hand-written character class against a newer Unicode database.
    missing = [
        f"U+{cp:04X}"
        for cp in range(sys.maxunicode + 1)
        if unicodedata.category(chr(cp)) in DANGEROUS_CATEGORIES and visible(chr(cp)) == chr(cp)
    ]
    assert missing == []


@settings(max_examples=300, deadline=None)
@given(st.text(ALPHABET))
def test_visible_output_has_no_dangerous_character(raw: str) -> None:
    shown = visible(raw)
    assert all(unicodedata.category(ch) not in DANGEROUS_CATEGORIES for ch in shown)
    if all(unicodedata.category(ch) not in DANGEROUS_CATEGORIES for ch in raw):
        assert shown == raw  # harmless text is shown as is


# ---- whole report --------------------------------------------------------------------------


def assert_inert(output: str) -> None:
    """Fail if output holds anything a terminal would interpret, beyond layout newlines."""
    assert ESC not in output
    assert not C1.search(output)
    assert not BIDI.search(output)
    for char in "\x07\r\x7f":
        assert char not in output
    assert all(unicodedata.category(ch) not in DANGEROUS_CATEGORIES for ch in output.replace("\n", ""))


def test_hostile_text_is_inert_and_visible_in_plain_output(report: Report) -> None:
    wide = render_console(report, color=False, width=2000)
    assert_inert(wide)
    # The caption is capped at 120 characters before escaping; its visible form is on one line.
    assert visible(HOSTILE_CAPTION, limit=120) in wide
    assert "[bold red]PASS[/]" in wide  # markup printed literally, not interpreted
    assert "site=[bold red]PASS[/]" in wide
    assert "owner=ops\\nteam" in wide
    assert "\\x1b]0;pwned\\x07[red]ok[/red]\\r\\nline" in wide  # error message from a host
    assert '["2", "\\x1b[2J"]' in wide  # REG_MULTI_SZ data
    assert CHINESE_CAPTION in wide


def test_color_output_has_only_sgr_escapes_and_same_text(report: Report) -> None:
    colored = render_console(report, color=True, width=120)
    assert SGR.search(colored)
    stripped = SGR.sub("", colored)
    assert_inert(stripped)
    plain = "\n".join(line.rstrip() for line in stripped.split("\n"))
    assert plain == render_console(report, color=False, width=120)


@settings(max_examples=150, deadline=None)
@given(st.text(ALPHABET, min_size=1, max_size=60))
def test_any_caption_renders_inert_and_visible(caption: str) -> None:
    hostile = with_caption(BASE, caption)
    assert_inert(render_console(hostile, color=False, width=2000))
    colored = render_console(hostile, color=True, width=2000)
    assert_inert(SGR.sub("", colored))
    assert visible(caption) in SGR.sub("", colored)


@settings(max_examples=100, deadline=None)
@given(
    st.text(ALPHABET, min_size=1, max_size=40),
    # rich trims whitespace at the edges of a wrapped cell line: edge spaces of a tag are not shown
    st.text(ALPHABET, max_size=40).filter(lambda t: t == t.strip()),
    st.text(ALPHABET, max_size=40),
)
def test_any_name_tag_and_error_message_render_inert(name: str, tag: str, message: str) -> None:
    observation = Observation(
        target=target(name).model_copy(update={"tags": {tag: tag}}),
        error=HostError(stage=Stage.AUTH, reason=message or "r", message=message),
    )
    out = render_console(assemble([observation], {}, BASE.header.scan), color=False, width=2000)
    assert_inert(out)
    for shown in (visible(name), visible(f"{tag}={tag}"), visible(message)):
        assert shown in out


# ---- layout --------------------------------------------------------------------------------


def status_column(output: str) -> list[str]:
    """Return the status label of each table row, top to bottom."""
    labels = ("ERROR", "FAIL", "WAIVED", "PASS", "N/A")
    return [line.split()[0] for line in output.splitlines() if line.split()[:1] and line.split()[0] in labels]


def test_hosts_are_listed_worst_first_then_by_name(report: Report) -> None:
    out = render_console(report, color=False, width=200)
    assert status_column(out) == ["ERROR"] * 3 + ["FAIL"] * 8 + ["WAIVED", "PASS", "PASS", "PASS", "N/A"]
    rows = [line.split()[1] for line in out.splitlines() if line.startswith(("PASS", "ERROR"))]
    assert rows == ["srv-auth", "srv-refused", "srv-timeout", "srv-pass-01", "SRV-pass-02", "xp-sp3"]


def test_summary_shows_counts_coverage_modes_and_requests(report: Report) -> None:
    out = render_console(report, color=False, width=120)
    assert "16 total · 3 error · 8 fail · 1 waived · 3 pass · 1 n/a" in out
    assert "81.25 %  (13 of 16 hosts read; 3 could not be read)" in out
    assert "mode 0: 5 · mode 1: 2 · mode 2: 3 · unknown: 2 · n/a: 1" in out
    assert "Requests   109" in out


def test_evidence_for_every_non_pass_and_none_for_pass(report: Report) -> None:
    out = render_console(report, color=False, width=300)
    assert "connect/refused: connection refused" in out
    assert "timeout/host_deadline: no complete reply within 30 s" in out
    assert "NATT-001, NATT-002, NATT-003: error (host not read)" in out
    assert "PolicyAgent: REG_DWORD 4294967295 (0xffffffff)" in out
    assert 'PolicyAgent: REG_SZ "2"' in out
    stray = 'stray IPsec: REG_DWORD 2 name "assumeudpencapsulationcontextonsendrule" (ignored by this OS)'
    assert stray in out
    assert "NATT-001 (high) waived: effective mode 2; waived until 2027-01-31 (CHG-1234)" in out
    pass_rows = [line for line in out.splitlines() if line.startswith("PASS")]
    assert len(pass_rows) == 3
    assert all("NATT-" not in line for line in pass_rows)


def many_passing(count: int) -> Report:
    """Return the sample plus `count` extra passing hosts."""
    template = next(h for h in BASE.hosts if h.status is Status.PASS)
    extra = [template.model_copy(update={"name": f"pass-{i:05d}"}) for i in range(count)]
    return with_hosts(BASE, [*BASE.hosts, *extra])


def test_many_passing_hosts_collapse_to_one_count_line() -> None:
    out = render_console(many_passing(30), color=False, width=120)
    assert "33 passing hosts are not listed; the JSON report (-f json) lists every host." in out
    assert "PASS" not in status_column(out)
    assert status_column(out).count("FAIL") == 8  # everything that needs attention is still there
    few = render_console(many_passing(30), color=False, width=120, max_pass_rows=50)
    assert status_column(few).count("PASS") == 33


def test_empty_inventory_says_so() -> None:
    empty = assemble([], {}, BASE.header.scan, tool_version="0.1.0")
    out = render_console(empty, color=False, width=100)
    for shown in ("No hosts in the inventory.", "0.00 %", "none (no host read)"):
        assert shown in out


def test_interrupted_scan_is_flagged() -> None:
    scan = BASE.header.scan.model_copy(update={"interrupted": True})
    interrupted = Report(BASE.header.model_copy(update={"scan": scan}), BASE.hosts)
    assert "INTERRUPTED: partial report" in render_console(interrupted, color=False)


def test_rendering_ignores_the_environment(monkeypatch: pytest.MonkeyPatch, report: Report) -> None:
    before = render_console(report, color=False)
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "dumb")
    assert render_console(report, color=False) == before
    assert SGR.search(render_console(report, color=True))
    assert before.count("\n") > 20
    assert max(len(line) for line in before.splitlines()) == 120


def scaled(count: int) -> Report:
    """Return a report of `count` hosts cycling through the sample's (mostly failing) hosts."""
    sample = list(BASE.hosts)
    hosts: list[HostReport] = [
        sample[i % len(sample)].model_copy(update={"name": f"{sample[i % len(sample)].name}-{i:06d}"})
        for i in range(count)
    ]
    return with_hosts(BASE, hosts)


def test_rendering_time_grows_linearly() -> None:
    small, large = scaled(200), scaled(800)

    def best(r: Report) -> float:
        # This process's CPU time, not wall time: other processes on a shared machine (a parallel
        # test run, CI neighbours) stretch wall time unevenly and made the ratio flaky.
        times = []
        for _ in range(2):
            start = time.process_time()
            render_console(r, color=False)
            times.append(time.process_time() - start)
        return min(times)

    # 4x the hosts: linear is ~4x, quadratic would be ~16x.
    assert best(large) / best(small) < 8
