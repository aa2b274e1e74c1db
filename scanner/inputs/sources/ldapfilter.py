"""Check the syntax of an LDAP search filter (RFC 4515 section 3), without any LDAP library."""

from __future__ import annotations

import re

MAX_FILTER_LENGTH = 4096
MAX_DEPTH = 32

# attributedescription = attributetype options (RFC 4512 section 2.5): a descr or numericoid, ";option"s.
_ATTR = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)(?:;[A-Za-z0-9-]+)*", re.ASCII)
_RULE = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)", re.ASCII)
_HEX = frozenset("0123456789abcdefABCDEF")


class FilterSyntaxError(ValueError):
    """The filter is not an RFC 4515 filter; the message names the position."""


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> FilterSyntaxError:
        return FilterSyntaxError(f"{message} at position {self.pos + 1}")

    def expect(self, char: str) -> None:
        if self.pos >= len(self.text) or self.text[self.pos] != char:
            found = "the end" if self.pos >= len(self.text) else repr(self.text[self.pos])
            raise self.fail(f"expected {char!r}, found {found}")
        self.pos += 1

    def filter(self, depth: int) -> None:
        # filter = LPAREN filtercomp RPAREN
        if depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH} levels")
        self.expect("(")
        char = self.text[self.pos : self.pos + 1]
        if char in ("&", "|"):
            self.pos += 1
            if self.text[self.pos : self.pos + 1] != "(":
                raise self.fail(f"'{char}' needs at least one filter")
            while self.text[self.pos : self.pos + 1] == "(":
                self.filter(depth + 1)
        elif char == "!":
            self.pos += 1
            self.filter(depth + 1)
        else:
            self.item()
        self.expect(")")

    def value(self, *, stars: bool) -> None:
        # assertionvalue: any UTF-8 except NUL ( ) * \ unescaped; "\" must start a hex pair.
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == ")":
                return
            if char == "(" or char == "\x00":
                raise self.fail(f"{char!r} must be escaped as \\{ord(char):02x} in a value")
            if char == "*" and not stars:
                raise self.fail("'*' must be escaped as \\2a in this value")
            if char == "\\":
                pair = self.text[self.pos + 1 : self.pos + 3]
                if len(pair) != 2 or not set(pair) <= _HEX:
                    raise self.fail("'\\' must be followed by two hex digits")
                self.pos += 3
                continue
            self.pos += 1

    def item(self) -> None:
        # simple / present / substring: attr ("=" | "~=" | ">=" | "<=") value; extensible: attr? [:dn] [:rule] :=
        match = _ATTR.match(self.text, self.pos)
        if match:
            self.pos = match.end()
        rest = self.text[self.pos :]
        if rest.startswith(("~=", ">=", "<=")):
            if not match:
                raise self.fail("an attribute name is missing")
            self.pos += 2
            self.value(stars=False)
        elif rest.startswith("="):
            if not match:
                raise self.fail("an attribute name is missing")
            self.pos += 1
            self.value(stars=True)  # "=*" is presence, "a*b" a substring match
        elif rest.startswith(":"):
            self.extensible(has_attr=match is not None)
        else:
            raise self.fail("expected an attribute and a comparison (=, ~=, >=, <=, :=)")

    def extensible(self, *, has_attr: bool) -> None:
        rule = False
        if self.text.startswith(":dn", self.pos) and self.text[self.pos + 3 : self.pos + 4] == ":":
            self.pos += 3
        if not self.text.startswith(":=", self.pos):
            self.expect(":")
            match = _RULE.match(self.text, self.pos)
            if not match:
                raise self.fail("expected a matching rule after ':'")
            self.pos = match.end()
            rule = True
        if not has_attr and not rule:
            raise self.fail("an extensible match needs an attribute or a matching rule")
        self.expect(":")
        self.expect("=")
        self.value(stars=False)


def check_filter(text: str) -> None:
    """Raise FilterSyntaxError when `text` is not one complete RFC 4515 filter in parentheses."""
    if not text:
        raise FilterSyntaxError("the filter is empty")
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterSyntaxError(f"the filter is longer than {MAX_FILTER_LENGTH} characters")
    parser = _Parser(text)
    parser.filter(0)
    if parser.pos != len(text):
        raise parser.fail("unexpected text after the filter (combine filters with (&...) or (|...))")
