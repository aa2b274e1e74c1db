"""Make untrusted text inert for every place natt-audit writes it: one definition, one function per format.

Host-supplied text (captions, registry data, SOAP faults, names and tags from inventories) can
hold characters that move a terminal's cursor, recolour it, hide text or reorder a line. `UNSAFE`
below is the only definition of those characters in natt-audit; each output format has one
function here that applies the format's own escaping rules and spells every unsafe character as
a visible escape, so an analyst sees what the host sent instead of what it wanted shown.

The visible escape of one character (`visible`): `\\n`, `\\r`, `\\t` for the three named controls,
`\\xNN` up to U+00FF, `\\uNNNN` in the BMP (lone surrogates included), `\\UNNNNNNNN` above it.
"""

from __future__ import annotations

import html
import re

from rich.text import Text

# The unsafe characters (tests/scanner/core/test_sanitize.py checks this class against every
# Cc/Cf/Cs/Zl/Zp code point of the running Python's Unicode database):
# - C0 controls, DEL and C1 controls (Cc): ESC starts CSI/OSC sequences, 0x9B is an 8-bit CSI on
#   some terminals (ECMA-48 control functions), BEL/NUL/CR/LF/TAB split or forge lines and cells;
# - every format character (Cf): bidi embeddings/overrides U+202A-U+202E, isolates U+2066-U+2069,
#   LRM/RLM U+200E/U+200F and ALM U+061C (Trojan Source, CVE-2021-42574; Unicode UAX #9), zero-width
#   space/joiners U+200B-U+200D, word joiner and invisible operators U+2060-U+2064, the deprecated
#   format characters U+206A-U+206F, soft hyphen U+00AD, Arabic/Syriac/Egyptian/musical format
#   controls and the interlinear annotation characters U+FFF9-U+FFFB;
# - the whole tag block U+E0000-U+E007F (invisible ASCII look-alikes: a hidden second string),
#   including its unassigned code points, so a newer Unicode version cannot open a gap;
# - line and paragraph separators U+2028/U+2029 (Zl/Zp: line breaks to JavaScript and editors);
# - lone surrogates U+D800-U+DFFF (Cs: undecodable host bytes; they cannot be written as UTF-8).
# U+FEFF (zero-width no-break space, the BOM) is Cf and unsafe: it is invisible, and readers drop
# it silently at the start of a file, cell or line, so two different values would look the same.
# Variation selectors (U+FE00-U+FE0F, U+E0100-U+E01EF, Mongolian U+180B-U+180D/U+180F) are kept:
# they are marks (Mn) that pick the glyph of the character before them, needed by CJK
# ideographic variation sequences and emoji presentation in real captions, and they cannot move,
# hide or reorder any other character of the line.
_UNSAFE_ABOVE_C0 = (
    "\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u2028-\u202e\u2060-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e007f"
)
_UNSAFE_CLASS = "\x00-\x1f" + _UNSAFE_ABOVE_C0
UNSAFE = re.compile(f"[{_UNSAFE_CLASS}]")

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_char(char: str) -> str:
    """Return the visible escape of one character: `\\n`, `\\x1b`, `\\u202e` or `\\U000e0041`."""
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _escape_match(match: re.Match[str]) -> str:
    return escape_char(match.group())


def has_unsafe(text: str) -> bool:
    """Return whether `text` holds any unsafe character (for inputs that refuse rather than escape)."""
    return UNSAFE.search(text) is not None


def visible(text: str, limit: int | None = None) -> str:
    """Return `text` with every unsafe character spelled as its visible escape, cut to `limit` first."""
    suffix = ""
    if limit is not None and len(text) > limit:
        suffix = f"… (+{len(text) - limit} chars)"
        text = text[:limit]
    return UNSAFE.sub(_escape_match, text) + suffix


def console_text(text: str, style: str = "", *, limit: int | None = None) -> Text:
    """Return text for a rich console: a `Text` (never parsed as markup) with unsafe characters escaped."""
    # A rich Text is rendered as its plain characters: `[bold]` or `[link=...]` from a host is shown
    # literally, which is stricter than rich.markup.escape on a markup string. visible() removes
    # what the terminal itself would act on (ECMA-48 control functions, bidi reordering).
    return Text(visible(text, limit), style=style)


def one_line(text: str, limit: int = 500) -> str:
    """Return `text` as one inert line for stderr or a log: escaped, cut to `limit` characters with `…`."""
    clean = UNSAFE.sub(_escape_match, text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


# A cell starting with one of these is a formula to Excel/LibreOffice/Sheets (OWASP "CSV
# injection"): prefix it with an apostrophe so it is shown as text. TAB, CR and LF are listed
# because some importers trim leading whitespace and then see the next character.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")


def neutralise(cell: str) -> str:
    """Return `cell` with a leading `'` when a spreadsheet would read it as a formula."""
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


def csv_cell(text: str) -> str:
    """Return a CSV cell: unsafe characters escaped (one record per line), then formula-neutralised."""
    # RFC 4180 would allow CR/LF inside a quoted cell, but line-based SIEM collectors split there;
    # the csv module quotes `"` and `,` itself.
    return neutralise(visible(text))


def _doubled(char: str) -> str:
    # A visible escape inside a format whose escape character is also `\`: the backslash itself is
    # escaped, so a reader decodes the literal text `\x1b`, never an (undefined) `\x` escape.
    return "\\" + escape_char(char)


_CEF_HEADER = re.compile(f"[\\\\|{_UNSAFE_CLASS}]")
_CEF_HEADER_MAP = {"\\": "\\\\", "|": "\\|", "\r": " ", "\n": " "}


def cef_header(text: str) -> str:
    """Return a CEF header field: `\\` and `|` escaped, CR/LF as a space, other unsafe characters visible."""
    # ArcSight "Implementing ArcSight Common Event Format (CEF)", Character Encoding: in the header
    # only `|` and `\` are escaped with a backslash, and a field must not hold a line break.
    return _CEF_HEADER.sub(lambda m: _CEF_HEADER_MAP.get(m.group()) or _doubled(m.group()), text)


_CEF_EXTENSION = re.compile(f"[\\\\={_UNSAFE_CLASS}]")
_CEF_EXTENSION_MAP = {"\\": "\\\\", "=": "\\=", "\n": "\\n", "\r": "\\r"}


def cef_extension(text: str) -> str:
    """Return a CEF extension value: `\\`, `=`, LF and CR escaped (`|` stays), other unsafe characters visible."""
    # ArcSight CEF, Character Encoding: in the extension `\` and `=` are escaped with a backslash
    # and a multi-line value is encoded with `\n` / `\r`; no other escape is defined.
    return _CEF_EXTENSION.sub(lambda m: _CEF_EXTENSION_MAP.get(m.group()) or _doubled(m.group()), text)


_SD_PARAM = re.compile(f'[\\\\"\\]{_UNSAFE_CLASS}]')
_SD_PARAM_MAP = {"\\": "\\\\", '"': '\\"', "]": "\\]", "\n": "\\n", "\r": "\\r"}


def sd_param(text: str) -> str:
    """Return an RFC 5424 SD-PARAM value: `\\`, `"` and `]` escaped, CR/LF as `\\r`/`\\n`, the rest visible."""
    # RFC 5424 section 6.3.3: `"`, `\` and `]` MUST be escaped with a backslash. CR/LF keep the
    # `\r`/`\n` spelling docs/siem.md promises, so no frame ever holds a raw line break.
    return _SD_PARAM.sub(lambda m: _SD_PARAM_MAP.get(m.group()) or _doubled(m.group()), text)


def syslog_header(text: str, limit: int) -> str:
    """Return an RFC 5424 header field: printable US-ASCII (33-126) only, or NILVALUE `-` when empty."""
    # RFC 5424 section 6: HOSTNAME, APP-NAME, PROCID and MSGID are 1*nn PRINTUSASCII.
    token = "".join(ch if 33 <= ord(ch) <= 126 else "_" for ch in text)[:limit]
    return token or "-"


def syslog_msg(text: str) -> str:
    """Return a syslog MSG with no unsafe character raw (its CEF or JSON body has escaped them already)."""
    # RFC 5424 section 6.4 allows any octets in MSG, but a raw line break splits the record for
    # every newline-framed receiver (RFC 6587 section 3.4.2): this is the guarantee, not the mechanism.
    return UNSAFE.sub(_escape_match, text)


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code > 0xFFFF:  # astral: a UTF-16 surrogate pair, as RFC 8259 section 7 spells it
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


# json.dumps escapes `"`, `\` and every C0 control inside strings (RFC 8259 section 7); a raw C0
# character in its output is layout (the LF and spaces of indent=2). The rest of the unsafe set
# is what JSON leaves raw.
_JSON_UNSAFE = re.compile(f"[{_UNSAFE_ABOVE_C0}]")


def json_text(document: str) -> str:
    """Return json.dumps output with every unsafe character it left raw written as a `\\uXXXX` escape."""
    # With ensure_ascii=False, json.dumps writes DEL, C1, bidi/format characters, U+2028/9 and lone
    # surrogates raw. A \uXXXX escape keeps the JSON value exactly the host's text (a parser gets it
    # back) while the file stays inert in `cat`, `less` or an editor. Outside strings json.dumps
    # writes only ASCII, so substituting over the whole document touches string contents only.
    return _JSON_UNSAFE.sub(_json_escape, document)


def html_text(value: object) -> str:
    """Return text for HTML content or a quoted attribute: unsafe characters visible, then entity-escaped."""
    # HTML Living Standard, "Character references": `&` `<` `>` `"` `'` as references; visible
    # escapes hold only `\` and ASCII letters and digits, so escaping after them cannot break one.
    return html.escape(visible(str(value)), quote=True)


# XML 1.0 section 2.2 (Char): besides the C0 controls, surrogates are already unsafe; U+FFFE and
# U+FFFF are not characters at all, and a parser refuses them even as character references.
_XML_FORBIDDEN = re.compile(f"[{_UNSAFE_CLASS}\ufffe\uffff]")


def xml_text(value: str) -> str:
    """Return XML 1.0 character data: unsafe and XML-forbidden characters visible, `& < >` as entities."""
    value = _XML_FORBIDDEN.sub(_escape_match, value)
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xml_attr(value: str) -> str:
    """Return an XML 1.0 attribute value for double or single quotes: `xml_text` plus both quotes."""
    # TAB, CR and LF would be normalised to spaces by the parser (XML 1.0 section 3.3.3); they are
    # unsafe, so xml_text has spelled them out already.
    return xml_text(value).replace('"', "&quot;").replace("'", "&apos;")
