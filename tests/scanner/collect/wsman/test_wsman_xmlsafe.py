"""The hardened XML reader: namespaces, nil, and refusal of bombs, XXE and deep nesting."""

from __future__ import annotations

import time
from xml.sax.saxutils import escape

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.collect.wsman.errors import CollectError
from scanner.collect.wsman.xmlsafe import XSI_NS, parse
from scanner.core.models import Stage

NS = "urn:example"


def reason_of(data: bytes) -> str:
    with pytest.raises(CollectError) as info:
        parse(data)
    assert info.value.stage is Stage.PARSE
    return info.value.reason


def test_matches_by_namespace_not_prefix() -> None:
    a = parse(b'<a:r xmlns:a="urn:example"><a:x>1</a:x><b:x xmlns:b="urn:other">2</b:x></a:r>')
    b = parse(b'<zz:r xmlns:zz="urn:example"><zz:x>1</zz:x></zz:r>')
    assert (a.ns, a.local) == (b.ns, b.local) == (NS, "r")
    assert a.child(NS, "x") is not None
    assert a.child(NS, "x").text == "1"  # type: ignore[union-attr]
    assert [c.text for c in a.iter_children("urn:other", "x")] == ["2"]
    assert [c.text for c in a.iter_children(None, "x")] == ["1", "2"]


def test_unnamespaced_children_and_nil() -> None:
    root = parse(
        f'<w:F xmlns:w="urn:w" xmlns:xsi="{XSI_NS}"><Caption xsi:nil="true"/>'
        "<Version>10.0</Version></w:F>".encode()
    )
    caption = root.child("", "Caption")
    assert caption is not None
    assert caption.nil
    version = root.child("", "Version")
    assert version is not None
    assert not version.nil
    assert version.text == "10.0"


def test_text_with_entities_and_cdata() -> None:
    root = parse(b"<r>a &amp; b &lt;c&gt; &#x202E;[bold]<![CDATA[<raw>]]></r>")
    assert root.text == "a & b <c> \u202e[bold]<raw>"


def test_billion_laughs_refused_fast() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    for i in range(1, 10):
        bomb += f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">'.encode()
    bomb += b"]><lolz>&lol9;</lolz>"
    start = time.perf_counter()
    assert reason_of(bomb) == "xml_forbidden"
    assert time.perf_counter() - start < 1


def test_quadratic_blowup_refused() -> None:
    big = "A" * 100_000
    doc = f'<!DOCTYPE r [<!ENTITY a "{big}">]><r>{"&a;" * 1000}</r>'.encode()
    assert reason_of(doc) == "xml_forbidden"


def test_external_entity_refused() -> None:
    doc = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
    assert reason_of(doc) == "xml_forbidden"


def test_doctype_without_entities_refused() -> None:
    assert reason_of(b"<!DOCTYPE r><r/>") == "xml_forbidden"


def test_undeclared_entity_is_malformed() -> None:
    assert reason_of(b"<r>&nope;</r>") == "malformed_xml"


def test_deep_nesting_refused_fast() -> None:
    depth = 200_000
    doc = b"<a>" * depth + b"</a>" * depth
    start = time.perf_counter()
    assert reason_of(doc) == "xml_too_deep"
    assert time.perf_counter() - start < 1


def test_depth_limit_is_exact() -> None:
    assert parse(b"<a>" * 64 + b"</a>" * 64).local == "a"
    assert reason_of(b"<a>" * 65 + b"</a>" * 65) == "xml_too_deep"


@pytest.mark.parametrize(
    "data",
    [b"", b"not xml", b"<a>", b"<a></b>", b"<a/><b/>", b"\xff\xfe<\x00", b"<a>\xff</a>", b"<?xml?>"],
)
def test_malformed(data: bytes) -> None:
    assert reason_of(data) == "malformed_xml"


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_classified_errors(data: bytes) -> None:
    reason = "ok"
    try:
        parse(data)
    except CollectError as exc:
        reason = exc.reason
    assert reason in ("ok", "malformed_xml", "xml_forbidden", "xml_too_deep")


_xml_char = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r").filter(
    lambda c: c in "\t\n" or (ord(c) >= 0x20 and c not in "\ufffe\uffff")
)


@given(st.text(_xml_char, max_size=200))
def test_text_round_trips(text: str) -> None:
    root = parse(f'<p:v xmlns:p="{NS}">{escape(text)}</p:v>'.encode())
    assert root.text == text


def test_control_character_references_survive_as_text() -> None:
    # WMI writes control characters as references XML 1.0 forbids; the text must still arrive.
    root = parse(b"<r>A&#x1B;[31m&#27;B&#x0;&#xD800;&#65;&#x202E;</r>")
    assert root.text == "A\x1b[31m\x1bB\x00\ufffdA\u202e"


def test_private_use_text_untouched_without_forbidden_references() -> None:
    assert parse("<r>\uf71b&#x41;</r>".encode()).text == "\uf71bA"
