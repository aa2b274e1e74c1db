"""Strict parsers of what a receiver got: an RFC 5424 line with our SD-ELEMENT and its CEF MSG."""

from __future__ import annotations

import re

from tests.support.cefparse import parse as parse_cef

_HEADER = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) "
    r"(?P<procid>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) "
)
_SD_UNESCAPE = {'"': '"', "\\": "\\", "]": "]", "n": "\n", "r": "\r"}


def parse_sd(text: str, pos: int) -> tuple[str, dict[str, str], int]:
    """Parse one SD-ELEMENT at pos; return (SD-ID, params, position after it)."""
    if text[pos] != "[":
        raise ValueError("no SD-ELEMENT")
    match = re.compile(r"\[([!-~]+?)(?=[ \]])").match(text, pos)
    if match is None:
        raise ValueError("bad SD-ID")
    sd_id, pos = match.group(1), match.end()
    params: dict[str, str] = {}
    while text[pos] == " ":
        name_match = re.compile(r" ([!-~]+?)=\"").match(text, pos)
        if name_match is None:
            raise ValueError("bad SD-PARAM")
        pos = name_match.end()
        value: list[str] = []
        while text[pos] != '"':
            if text[pos] == "\\" and text[pos + 1] in _SD_UNESCAPE:
                value.append(_SD_UNESCAPE[text[pos + 1]])
                pos += 2
            elif text[pos] in "]\n\r":
                raise ValueError("unescaped ] or newline in a PARAM-VALUE")
            else:
                value.append(text[pos])
                pos += 1
        params[name_match.group(1)] = "".join(value)
        pos += 1
    if text[pos] != "]":
        raise ValueError("SD-ELEMENT not closed")
    return sd_id, params, pos + 1


def parse_syslog(line: str) -> dict[str, object]:
    """Parse an RFC 5424 message whose SD is one natt@32473 element and whose MSG is CEF."""
    if "\n" in line or "\r" in line:
        raise ValueError("raw newline in a syslog message")
    match = _HEADER.match(line)
    if match is None:
        raise ValueError(f"not RFC 5424: {line[:80]!r}")
    sd_id, params, pos = parse_sd(line, match.end())
    if line[pos] != " ":
        raise ValueError("no space before MSG")
    msg = line[pos + 1 :]
    header, ext = parse_cef(msg)
    return {**match.groupdict(), "sd_id": sd_id, "sd": params, "cef_header": header, "cef": ext}
