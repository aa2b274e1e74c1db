"""A small parser of regedit's .reg format (version 5.00), strict enough to catch a malformed file.

It reads the bytes as regedit writes them (UTF-16 LE with a byte-order mark, CRLF line ends) and
returns every key and value line; comments (`;`) and blank lines are skipped. Anything else is an
error, so an injected line shows up as a parse failure or an extra entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEADER = "Windows Registry Editor Version 5.00"
_KEY = re.compile(r"\[(-?)(HKEY_[A-Z_]+)\\([^\[\]\r\n]+)\]\Z")
_NAME = r'"((?:[^"\\]|\\.)*)"'
_DWORD = re.compile(_NAME + r"=dword:([0-9a-f]{8})\Z")
_DELETE = re.compile(_NAME + r"=-\Z")
_STRING = re.compile(_NAME + r'="((?:[^"\\]|\\.)*)"\Z')


class RegParseError(ValueError):
    """The bytes are not a well-formed .reg file."""


@dataclass(frozen=True)
class Entry:
    """One value line under its key: ("dword", n), ("delete", None) or ("string", s)."""

    hive: str
    key: str
    name: str
    kind: str
    data: int | str | None


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_reg(raw: bytes) -> tuple[list[str], list[Entry]]:
    """Return (comment lines, entries) of a .reg file; raise RegParseError when it is malformed."""
    if not raw.startswith(b"\xff\xfe"):
        raise RegParseError("no UTF-16 LE byte-order mark")
    try:
        text = raw[2:].decode("utf-16-le")
    except UnicodeDecodeError as exc:
        raise RegParseError(f"not UTF-16 LE: {exc}") from None
    if "\n" in text.replace("\r\n", "") or "\r" in text.replace("\r\n", ""):
        raise RegParseError("a line end that is not CRLF")
    lines = text.split("\r\n")
    if lines[0] != HEADER or lines[1] != "":
        raise RegParseError(f"bad header {lines[0]!r}")
    comments: list[str] = []
    entries: list[Entry] = []
    current: tuple[str, str] | None = None
    for number, line in enumerate(lines[2:], start=3):
        if line == "":
            continue
        if line.startswith(";"):
            comments.append(line)
            continue
        key = _KEY.match(line)
        if key:
            if key.group(1):
                raise RegParseError(f"line {number}: a key deletion")
            current = (key.group(2), key.group(3))
            continue
        if current is None:
            raise RegParseError(f"line {number}: a value before any key: {line!r}")
        for pattern, kind in ((_DWORD, "dword"), (_DELETE, "delete"), (_STRING, "string")):
            match = pattern.match(line)
            if match:
                data: int | str | None = None
                if kind == "dword":
                    data = int(match.group(2), 16)
                elif kind == "string":
                    data = _unquote(match.group(2))
                entries.append(Entry(current[0], current[1], _unquote(match.group(1)), kind, data))
                break
        else:
            raise RegParseError(f"line {number}: not a .reg line: {line!r}")
    if not text.endswith("\r\n"):
        raise RegParseError("no final line end")
    return comments, entries
