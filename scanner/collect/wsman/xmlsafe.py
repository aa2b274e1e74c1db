"""A hardened XML reader for WS-Management replies: no DTDs, no entities, bounded depth.

Built directly on expat. Any DOCTYPE, entity declaration or external entity reference is refused
outright, which removes billion-laughs, quadratic blow-up and XXE as classes. Nesting is capped.
Size is capped earlier, by the transport. Elements are matched by namespace URI + local name,
never by prefix (prefixes vary between Windows versions).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from xml.parsers import expat

from scanner.collect.wsman.errors import CollectError
from scanner.core.models import Stage

XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
MAX_DEPTH = 64

# WMI serialises control characters in strings (an OS caption holding ESC, say) as character
# references such as &#x1B;, which XML 1.0 forbids, so a strict parser would make such a host
# unreadable. References to C0 controls are carried through a private-use stand-in
# (U+F700 + code) and turned back into the control character in element text; other forbidden
# code points (surrogates, U+FFFE/U+FFFF, beyond U+10FFFF) become U+FFFD. Renderers escape it all.
_CHARREF = re.compile(rb"&#(?:x([0-9A-Fa-f]{1,8})|([0-9]{1,10}));")
_STAND_IN = 0xF700
_FROM_STAND_IN = {_STAND_IN + code: code for code in range(0x20)}


def _xml_char(code: int) -> bool:
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _replace_forbidden_refs(data: bytes) -> tuple[bytes, bool]:
    """Rewrite character references XML 1.0 forbids; return (data, whether any was rewritten)."""
    if b"&#" not in data:
        return data, False
    changed = False

    def sub(match: re.Match[bytes]) -> bytes:
        nonlocal changed
        hex_digits, dec_digits = match.group(1), match.group(2)
        code = int(hex_digits, 16) if hex_digits else int(dec_digits)
        if _xml_char(code):
            return match.group(0)
        changed = True
        return b"&#x%X;" % (_STAND_IN + code if code < 0x20 else 0xFFFD)

    fixed = _CHARREF.sub(sub, data)
    return fixed, changed


class XmlForbidden(CollectError):
    """The document holds a construct we refuse (DTD, entity declaration, external entity)."""

    def __init__(self, what: str) -> None:
        super().__init__(Stage.PARSE, "xml_forbidden", f"reply contains a forbidden XML construct: {what}")


class XmlTooDeep(CollectError):
    """The document nests elements deeper than the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(Stage.PARSE, "xml_too_deep", f"reply nests elements deeper than {limit}")


class Element:
    """One parsed element: namespace URI, local name, attributes, text and children."""

    __slots__ = ("_text", "attrs", "children", "local", "ns")

    def __init__(self, ns: str, local: str, attrs: dict[str, str]) -> None:
        self.ns = ns
        self.local = local
        self.attrs = attrs  # keys: "local" or "namespace-uri local"
        self.children: list[Element] = []
        self._text: list[str] = []

    def __repr__(self) -> str:
        return f"Element({{{self.ns}}}{self.local}, children={len(self.children)})"

    @property
    def text(self) -> str:
        """Return the element's own character data (not its descendants')."""
        return "".join(self._text)

    @property
    def nil(self) -> bool:
        """Return whether the element is marked ``xsi:nil="true"``."""
        return self.attrs.get(f"{XSI_NS} nil", "").strip() in ("true", "1")

    def attr(self, name: str, ns: str = "") -> str | None:
        """Return an attribute by namespace and local name."""
        return self.attrs.get(f"{ns} {name}" if ns else name)

    def iter_children(self, ns: str | None, local: str) -> Iterator[Element]:
        """Yield direct children with this local name (and namespace, unless `ns` is None)."""
        for child in self.children:
            if child.local == local and (ns is None or child.ns == ns):
                yield child

    def child(self, ns: str | None, local: str) -> Element | None:
        """Return the first direct child with this name, or None."""
        return next(self.iter_children(ns, local), None)

    def find(self, *path: tuple[str | None, str]) -> Element | None:
        """Follow a path of (namespace, local) steps through direct children."""
        node: Element | None = self
        for ns, local in path:
            if node is None:
                return None
            node = node.child(ns, local)
        return node

    def iter(self) -> Iterator[Element]:
        """Yield this element and all its descendants, document order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


def _split(name: str) -> tuple[str, str]:
    ns, sep, local = name.rpartition(" ")
    return (ns, local) if sep else ("", name)


def parse(data: bytes, max_depth: int = MAX_DEPTH) -> Element:
    """Parse `data` into an Element tree, refusing DTDs/entities and deep nesting."""
    data, restore = _replace_forbidden_refs(data)
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    # Never fetch or expand parameter entities, even if a DTD slipped through (it cannot: see below).
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[Element] = []
    root: list[Element] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        if len(stack) >= max_depth:
            raise XmlTooDeep(max_depth)
        ns, local = _split(name)
        element = Element(ns, local, attrs)
        if stack:
            stack[-1].children.append(element)
        elif root:
            raise expat.ExpatError("more than one root element")
        else:
            root.append(element)
        stack.append(element)

    def end(_name: str) -> None:
        stack.pop()

    def chars(text: str) -> None:
        if stack:
            stack[-1]._text.append(text.translate(_FROM_STAND_IN) if restore else text)

    def doctype(*_args: object) -> None:
        raise XmlForbidden("DOCTYPE")

    def entity(*_args: object) -> None:
        raise XmlForbidden("ENTITY declaration")

    def external(*_args: object) -> int:
        raise XmlForbidden("external entity")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.UnparsedEntityDeclHandler = entity
    parser.ExternalEntityRefHandler = external
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise CollectError(Stage.PARSE, "malformed_xml", f"reply is not well-formed XML: {exc}") from None
    except RecursionError:  # cannot happen with the depth cap; kept so nothing escapes unclassified
        raise XmlTooDeep(max_depth) from None
    if not root:
        raise CollectError(Stage.PARSE, "malformed_xml", "reply has no root element")
    return root[0]
