"""A strict CEF:0 parser for the tests: refuses anything the CEF specification does not allow."""

from __future__ import annotations

import re

from scanner.core.sanitize import visible

_KEY = re.compile(r"[A-Za-z0-9_]+")
_HEADER_ESCAPES = {"\\": "\\", "|": "|"}
_EXT_ESCAPES = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}


class CefError(ValueError):
    """The line is not strictly valid CEF."""


def parse(line: str) -> tuple[list[str], dict[str, str]]:
    """Return the 7 unescaped header fields and the unescaped extension of one CEF line."""
    if "\n" in line or "\r" in line:
        raise CefError("raw line break inside a CEF record")
    if not line.startswith("CEF:"):
        raise CefError("no CEF: prefix")
    fields: list[str] = []
    current: list[str] = []
    i = 4
    while len(fields) < 7:
        if i >= len(line):
            raise CefError("header ends early")
        ch = line[i]
        if ch == "\\":
            if i + 1 >= len(line) or line[i + 1] not in _HEADER_ESCAPES:
                raise CefError(f"bad header escape at {i}")
            current.append(line[i + 1])
            i += 2
        elif ch == "|":
            fields.append("".join(current))
            current = []
            i += 1
        else:
            current.append(ch)
            i += 1
    if fields[0] != "0":
        raise CefError("version is not 0")
    return fields, parse_extension(line[i:])


def parse_extension(text: str) -> dict[str, str]:
    """Return the key/value pairs of a CEF extension; escapes other than \\\\ \\= \\n \\r are errors."""
    result: dict[str, str] = {}
    i = 0
    while i < len(text):
        match = _KEY.match(text, i)
        if match is None or match.end() >= len(text) or text[match.end()] != "=":
            raise CefError(f"expected key= at {i}: {text[i : i + 20]!r}")
        key = match.group()
        if key in result:
            raise CefError(f"duplicate key {key}")
        i = match.end() + 1
        value: list[str] = []
        while i < len(text):
            ch = text[i]
            if ch == "\\":
                if i + 1 >= len(text) or text[i + 1] not in _EXT_ESCAPES:
                    raise CefError(f"bad extension escape at {i}")
                value.append(_EXT_ESCAPES[text[i + 1]])
                i += 2
                continue
            if ch == "=":
                raise CefError(f"unescaped = in the value of {key}")
            if ch == " ":
                nxt = _KEY.match(text, i + 1)
                if nxt is not None and nxt.end() < len(text) and text[nxt.end()] == "=":
                    i += 1
                    break
            value.append(ch)
            i += 1
        result[key] = "".join(value)
    return result


def shown(text: str) -> str:
    """Return what a CEF or SD-PARAM reader gets back for host text: unsafe characters spelled as
    visible escapes, except CR and LF, which both formats carry as their own `\\r` / `\\n` escapes."""
    return "".join(ch if ch in "\r\n" else visible(ch) for ch in text)
