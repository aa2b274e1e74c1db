"""scanner/core/sanitize.py: one definition of unsafe characters, one escaping function per format."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import sys
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from scanner.core import sanitize
from scanner.core.sanitize import (
    FORMULA_PREFIXES,
    cef_extension,
    cef_header,
    console_text,
    csv_cell,
    html_text,
    json_text,
    one_line,
    sd_param,
    syslog_header,
    syslog_msg,
    visible,
    xml_attr,
    xml_text,
)
from tests.support.cefparse import parse as parse_cef
from tests.support.cefparse import shown
from tests.support.syslogparse import parse_sd

UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def is_unsafe(char: str) -> bool:
    """Return the brief's definition, written independently of the module's character class."""
    code = ord(char)
    return unicodedata.category(char) in UNSAFE_CATEGORIES or 0xE0000 <= code <= 0xE007F


# Named members of the set, drawn often: C0/C1/DEL, bidi overrides/isolates/marks, zero-width and
# other format characters, the BOM, tags, separators, lone surrogates.
UNSAFE_SAMPLES = (
    "\x00\x07\x08\t\n\r\x1b\x1f\x7f\x80\x85\x9b\x9f"
    "\u00ad\u061c\u180e\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2066\u2067\u2068\u2069\u206a\u206f\ufeff\ufff9\u2028\u2029\ud800\udc80\udfff"
    "\U000e0000\U000e0001\U000e0041\U000e007f\U0001d173"
)
# Characters every format treats specially, to meet the escapes above in the same string.
SPECIALS = "\\|=\"]['<>&;-+@ \ufffe\uffff"

HOSTILE = st.text(
    st.one_of(
        st.characters(exclude_categories=()),  # any code point, lone surrogates included
        st.sampled_from(UNSAFE_SAMPLES),
        st.sampled_from(SPECIALS),
        st.characters(categories=sorted(UNSAFE_CATEGORIES)),
        st.integers(0xE0000, 0xE007F).map(chr),
    ),
    max_size=80,
)

CONTEXTS: dict[str, Callable[[str], str]] = {
    "visible": visible,
    "console": lambda s: console_text(s).plain,
    "one_line": lambda s: one_line(s, limit=100_000),
    "csv": csv_cell,
    "cef_header": cef_header,
    "cef_extension": cef_extension,
    "sd_param": sd_param,
    "syslog_msg": syslog_msg,
    "syslog_header": lambda s: syslog_header(s, 10_000),
    "json": lambda s: json_text(json.dumps(s, ensure_ascii=False)),
    "html": html_text,
    "xml_text": xml_text,
    "xml_attr": xml_attr,
}


# ---- the one definition ----------------------------------------------------------------------


def test_the_class_holds_every_unsafe_code_point_of_this_python() -> None:
    # Guards the hand-written class against a newer Unicode database.
    missing = [
        f"U+{cp:04X}" for cp in range(sys.maxunicode + 1) if is_unsafe(chr(cp)) and not sanitize.has_unsafe(chr(cp))
    ]
    assert missing == []


def test_the_class_escapes_nothing_a_text_needs() -> None:
    # Anything beyond the definition must be unassigned here (a format character of a newer
    # Unicode version, listed ahead), never a letter, mark, digit or symbol.
    extra = [
        f"U+{cp:04X} {unicodedata.category(chr(cp))}"
        for cp in range(sys.maxunicode + 1)
        if sanitize.has_unsafe(chr(cp)) and not is_unsafe(chr(cp)) and unicodedata.category(chr(cp)) != "Cn"
    ]
    assert extra == []


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("\x1b[31m", "\\x1b[31m"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("\x00\x07\x7f\x9b", "\\x00\\x07\\x7f\\x9b"),
        ("soft\u00adhyphen", "soft\\xadhyphen"),
        ("alm\u061c", "alm\\u061c"),
        ("\u206a\u206f", "\\u206a\\u206f"),
        ("tag\U000e0041\U000e0000", "tag\\U000e0041\\U000e0000"),
        ("\ufeffbom", "\\ufeffbom"),
        ("\u2028\u2029", "\\u2028\\u2029"),
        ("lone\udc80", "lone\\udc80"),
    ],
)
def test_one_line_escapes_what_the_console_escapes(raw: str, escaped: str) -> None:
    # one_line once let U+00AD, U+061C, U+206A and tags through while the console escaped them.
    assert one_line(raw) == escaped
    assert console_text(raw).plain == escaped


def test_variation_selectors_and_ordinary_text_are_kept() -> None:
    for text in ("\u2764\ufe0f", "\u845b\U000e0100", "Microsoft Windows 10 专业版", "مرحبا", "back\\slash [b]"):
        assert visible(text) == text
        assert one_line(text) == text


def test_console_text_is_never_markup() -> None:
    text = console_text("[bold red]PASS[/] [link=http://evil]x[/link]", "bold")
    assert text.plain == "[bold red]PASS[/] [link=http://evil]x[/link]"
    assert text.spans == [] and text.style == "bold"


def test_limits_cut_before_escaping() -> None:
    assert visible("\x1b" * 5, limit=2) == "\\x1b\\x1b… (+3 chars)"
    assert one_line("x" * 10, limit=5) == "xxxx…"


# ---- no unsafe character survives any context ------------------------------------------------


@pytest.mark.parametrize("context", sorted(CONTEXTS))
@settings(max_examples=200, deadline=None)
@given(text=HOSTILE)
def test_no_unsafe_character_survives(context: str, text: str) -> None:
    out = CONTEXTS[context](text)
    assert [f"U+{ord(c):04X}" for c in out if is_unsafe(c)] == []


@given(text=st.text(st.characters(exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp")), max_size=40))
def test_safe_text_is_shown_as_it_is(text: str) -> None:
    assert visible(text) == text and one_line(text, limit=1000) == text
    assert json.loads(json_text(json.dumps(text, ensure_ascii=False))) == text


# ---- each context is valid for its format ----------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(text=HOSTILE)
def test_csv_cell_round_trips_on_one_line(text: str) -> None:
    cell = csv_cell(text)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([cell, "end"])
    assert buffer.getvalue().count("\n") == 1
    assert list(csv.reader(io.StringIO(buffer.getvalue()))) == [[cell, "end"]]
    assert not cell.startswith(FORMULA_PREFIXES)


def test_csv_cell_neutralises_formulas_after_escaping() -> None:
    assert csv_cell('=HYPERLINK("http://evil")') == '\'=HYPERLINK("http://evil")'
    assert csv_cell("\t=1") == "\\t=1"  # no longer a formula once the TAB is spelled out
    assert csv_cell("-2\x1b") == "'-2\\x1b"


def _unescaped_pipes(line: str) -> list[int]:
    return [m.start() for m in re.finditer(r"\\.|\|", line) if m.group() == "|"]


@settings(max_examples=300, deadline=None)
@given(fields=st.lists(HOSTILE, min_size=4, max_size=4), msg=HOSTILE, host=HOSTILE)
def test_cef_line_has_seven_header_pipes_and_parses(fields: list[str], msg: str, host: str) -> None:
    vendor, product, rule, name = (cef_header(f) for f in fields)
    line = f"CEF:0|{vendor}|{product}|1.0|{rule}|{name}|5|msg={cef_extension(msg)} dhost={cef_extension(host)}"
    pipes = _unescaped_pipes(line)
    assert len(pipes) >= 7 and line[pipes[6] + 1 :].startswith("msg=")  # `|` stays raw in the extension only
    assert len(_unescaped_pipes(line[: pipes[6] + 1])) == 7
    header, ext = parse_cef(line)  # strict: only the escapes CEF defines
    on_one_line = [shown(f).replace("\r", " ").replace("\n", " ") for f in fields]
    assert header[1:6] == [*on_one_line[:2], "1.0", *on_one_line[2:]]
    assert ext == {"msg": shown(msg), "dhost": shown(host)}


def test_cef_escapes_as_the_specification_says() -> None:
    assert cef_header("a\\b|c=d\ne") == "a\\\\b\\|c=d e"
    assert cef_extension("a\\b=c|d\ne\rf") == "a\\\\b\\=c|d\\ne\\rf"
    assert cef_extension("\x1b[2J\t") == "\\\\x1b[2J\\\\t"  # a reader gets the text `\x1b[2J\t`


@settings(max_examples=300, deadline=None)
@given(text=HOSTILE)
def test_sd_param_has_no_unescaped_special(text: str) -> None:
    value = sd_param(text)
    # RFC 5424 6.3.3: `"`, `\` and `]` only ever appear escaped; `\n`/`\r` are the documented extras.
    assert re.fullmatch(r'(?:[^"\\\]]|\\["\\\]nr])*', value), value
    sd_id, params, _end = parse_sd(f'[natt@32473 v="{value}"]', 0)
    assert sd_id == "natt@32473" and params == {"v": shown(text)}


@given(text=HOSTILE)
def test_syslog_header_is_printable_ascii(text: str) -> None:
    token = syslog_header(text, 32)
    assert 1 <= len(token) <= 32 and all(33 <= ord(c) <= 126 for c in token)


@settings(max_examples=300, deadline=None)
@given(text=HOSTILE)
def test_json_text_is_valid_json_that_keeps_the_text(text: str) -> None:
    document = json_text(json.dumps({"k": [text]}, indent=2, ensure_ascii=False))
    # The escapes give the host's text back exactly, except that a high then a low lone surrogate
    # read back as one astral character (RFC 8259 section 7 spells both the same way).
    paired = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    assert json.loads(document) == {"k": [paired]}
    assert all(not is_unsafe(c) for c in document.replace("\n", ""))


def test_json_text_matches_the_report_spelling() -> None:
    assert json_text(json.dumps("\x7f\u202e\U000e0041\udc80", ensure_ascii=False)) == (
        '"\\u007f\\u202e\\udb40\\udc41\\udc80"'
    )


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


@settings(max_examples=300, deadline=None)
@given(text=HOSTILE)
def test_html_text_holds_no_markup_from_the_input(text: str) -> None:
    out = html_text(text)
    assert not set("<>\"'") & set(out)
    assert html.unescape(out) == visible(text)
    page = _Tags()
    page.feed(f'<p title="{out}">{out}</p>')
    assert page.tags == ["p"]


@settings(max_examples=300, deadline=None)
@given(text=HOSTILE)
def test_junit_xml_parses_and_shows_the_text(text: str) -> None:
    root = ET.fromstring(f"<testcase name=\"{xml_attr(text)}\" other='{xml_attr(text)}'>{xml_text(text)}</testcase>")
    expected = "".join("\\u" + f"{ord(c):04x}" if c in "\ufffe\uffff" else visible(c) for c in text)
    assert root.attrib == {"name": expected, "other": expected}
    assert (root.text or "") == expected


@settings(max_examples=100, deadline=None)
@given(text=HOSTILE)
def test_console_output_shows_the_escaped_text(text: str) -> None:
    buffer = io.StringIO()
    Console(file=buffer, width=10_000, color_system=None, markup=False, emoji=False, highlight=False).print(
        console_text(text)
    )
    out = buffer.getvalue()
    assert out.rstrip("\n").rstrip() == visible(text).rstrip()
    assert all(not is_unsafe(c) for c in out.rstrip("\n"))
