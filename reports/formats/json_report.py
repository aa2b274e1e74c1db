"""Render the ScanReport as deterministic JSON (the `-f json` output)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import Enum

from pydantic import BaseModel

from reports.model import ScanReport
from scanner.core.sanitize import json_text

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


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
    return json_text(text) + "\n"


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
        text = json_text(text.replace("\n", "\n    "))
        yield ("    " if index == 0 else ",\n    ") + text
    yield "\n  ]" + after
