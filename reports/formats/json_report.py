"""Render a report as deterministic JSON (the `-f json` output), host by host."""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import Enum
from typing import TextIO

from pydantic import BaseModel

from reports.model import HostReport, ReportDocument, ReportHeader
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


def _dumps(value: JsonValue) -> str:
    """Return `value` as the report's JSON text (2-space indent, UTF-8), before escaping."""
    return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)


def document_plain(header: ReportHeader, hosts: Iterable[HostReport]) -> dict[str, JsonValue]:
    """Return the whole report as JSON values, keys in the file's order (`ReportDocument`)."""
    plain: dict[str, JsonValue] = {}
    for name in ReportDocument.model_fields:
        plain[name] = [to_plain(host) for host in hosts] if name == "hosts" else to_plain(getattr(header, name))
    return plain


def render_json_whole(header: ReportHeader, hosts: Iterable[HostReport]) -> str:
    """Render the report in one json.dumps call: the reference that `render_json` must equal."""
    return json_text(_dumps(document_plain(header, hosts))) + "\n"


def header_json(header: ReportHeader) -> str:
    """Return the report's JSON text with an empty host list (`"hosts": []`)."""
    return render_json_whole(header, ())


def render_json(
    header: ReportHeader,
    hosts: Iterable[HostReport],
    out: TextIO,
    *,
    color: bool = False,
    width: int | None = None,
) -> None:
    """Write the report as JSON to `out`, one host at a time: 2-space indent, trailing newline, byte-stable."""
    del color, width  # the JSON report is the same whatever the terminal
    # json.dumps(indent=2) of the whole report holds every token of the document in one list
    # (about 12 KB per host: 116 MB at 10,000 hosts); one host at a time keeps that flat
    # (docs/performance.md). Same bytes: indent=2 puts a host at depth 2 and escapes newlines
    # inside strings, so indenting every line of a host's own dump by four spaces places it
    # exactly; the escaping of unsafe characters is the renderer's own, applied per host.
    frame = header_json(header)
    before, after = frame.split('\n  "hosts": []', 1)  # the top-level key: only it sits at depth 1
    first = True
    for host in hosts:
        text = json_text(_dumps(to_plain(host)).replace("\n", "\n    "))
        out.write((before + '\n  "hosts": [\n    ' if first else ",\n    ") + text)
        first = False
    out.write(before + '\n  "hosts": []' + after if first else "\n  ]" + after)
