"""Render the ScanReport as deterministic JSON (the `-f json` output)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from enum import Enum

from pydantic import BaseModel

from reports.model import ScanReport

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]

# Characters that are valid raw inside a JSON string but harmful when the file is viewed (`cat`,
# `less`, an editor): C1 controls and DEL (8-bit CSI on some terminals), bidi overrides and
# isolates (Trojan Source, CVE-2021-42574), zero-width and other format characters, U+2028/9
# (line breaks to JavaScript), and lone surrogates (cannot be encoded as UTF-8 at all). They are
# written as \uXXXX escapes, so a JSON parser still gets the host's text back exactly
# (docs/reliability.md#host-supplied-text). Outside strings the JSON text is pure ASCII, so a plain
# substitution over the whole document only ever touches string contents.
_UNSAFE = re.compile(
    "[\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u2028-\u202e\u2060-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code > 0xFFFF:  # astral: a UTF-16 surrogate pair, as RFC 8259 section 7 spells it
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def to_plain(value: object) -> JsonValue:
    """Convert a model tree to JSON values: model field order kept, dict-valued fields sorted."""
    if isinstance(value, BaseModel):
        return {name: to_plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, Enum):
        return to_plain(value.value)
    if isinstance(value, dict):
        return {str(key): to_plain(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot render {type(value).__name__} as JSON")


def render_json_whole(report: ScanReport) -> str:
    """Render the report in one json.dumps call: the reference that json_chunks must equal."""
    text = json.dumps(to_plain(report), indent=2, ensure_ascii=False, allow_nan=False)
    return _UNSAFE.sub(_escape, text) + "\n"


def render_json(report: ScanReport, *, color: bool = False, width: int | None = None) -> str:
    """Return the report as JSON: 2-space indent, UTF-8 text, trailing newline, byte-stable."""
    del color, width  # the JSON report is the same whatever the terminal
    return "".join(json_chunks(report))


def json_chunks(report: ScanReport) -> Iterator[str]:
    """Yield the exact text of `render_json(report)`, one host at a time."""
    # json.dumps(indent=2) of the whole report holds every token of the document in one list
    # (about 12 KB per host: 116 MB at 10,000 hosts); one host at a time keeps that flat
    # (docs/performance.md). Same bytes: indent=2 puts a host at depth 2 and escapes newlines
    # inside strings, so indenting every line of a host's own dump by four spaces places it
    # exactly; the escaping of unsafe characters is the renderer's own, applied per host.
    frame = render_json_whole(report.model_copy(update={"hosts": []}))
    if not report.hosts:
        yield frame
        return
    before, after = frame.split('\n  "hosts": []', 1)  # the top-level key: only it sits at depth 1
    yield before + '\n  "hosts": [\n'
    for index, host in enumerate(report.hosts):
        text = json.dumps(to_plain(host), indent=2, ensure_ascii=False, allow_nan=False)
        text = _UNSAFE.sub(_escape, text.replace("\n", "\n    "))
        yield ("    " if index == 0 else ",\n    ") + text
    yield "\n  ]" + after
