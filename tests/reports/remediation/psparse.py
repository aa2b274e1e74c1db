"""Evaluate the string expressions the PowerShell writer emits, by the language's own rules.

PowerShell's single-quoted string literal (about_Quoting_Rules; the language specification,
section 2.3.5.2) ends at any single-quote character: the apostrophe U+0027 and the typographic
U+2018, U+2019, U+201A, U+201B; two of them in a row stand for one. This evaluator applies exactly
that, so a writer that forgot a typographic quote would produce an expression that ends early
here, as it would in PowerShell. It accepts only what the writer may emit: a literal,
`[string][char]0xNNNN`, or a parenthesised `+` of those.
"""

from __future__ import annotations

import re

QUOTES = "'\u2018\u2019\u201a\u201b"
_CHAR = re.compile(r"\[string\]\[char\]0x([0-9A-F]{4})")


class PsParseError(ValueError):
    """The expression is not one the writer may emit, or it ends early."""


def _literal(text: str, at: int) -> tuple[str, int]:
    if text[at] not in QUOTES:
        raise PsParseError(f"expected a quote at {at}")
    out: list[str] = []
    i = at + 1
    while i < len(text):
        ch = text[i]
        if ch in QUOTES:
            if i + 1 < len(text) and text[i + 1] in QUOTES:
                out.append(text[i + 1])
                i += 2
                continue
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise PsParseError("unterminated literal")


def _term(text: str, at: int) -> tuple[str, int]:
    match = _CHAR.match(text, at)
    if match:
        return chr(int(match.group(1), 16)), match.end()
    return _literal(text, at)


def scan(text: str, at: int) -> tuple[str, int]:
    """Return the value of the string expression starting at `at` and where it ends."""
    if text.startswith("(", at):
        parts, at = [], at + 1
        while True:
            value, at = _term(text, at)
            parts.append(value)
            if text.startswith(")", at):
                joined = "".join(parts)
                return joined.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass"), at + 1
            if not text.startswith(" + ", at):
                raise PsParseError(f"expected ' + ' or ')' at {at} in {text!r}")
            at += 3
    return _term(text, at)


def evaluate(expression: str) -> str:
    """Return the string an emitted expression evaluates to; raise PsParseError if it is not one."""
    if expression.startswith("(") and expression.endswith(")"):
        inner, parts, at = expression[1:-1], [], 0
        while True:
            value, at = _term(inner, at)
            parts.append(value)
            if at == len(inner):
                break
            if not inner.startswith(" + ", at):
                raise PsParseError(f"expected ' + ' at {at} in {inner!r}")
            at += 3
        joined = "".join(parts)
        # Join surrogate pairs back into one character, as a .NET string would display them.
        return joined.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    value, end = _term(expression, 0)
    if end != len(expression):
        raise PsParseError(f"the literal ends early, at {end} of {len(expression)}: {expression!r}")
    return value
