"""Make untrusted, host-supplied text inert for one-line destinations (logs, stderr messages)."""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, bidi embeddings/overrides/isolates, zero-width and BOM characters:
# anything that can move the cursor, recolour a terminal, hide text or reorder a line.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\u{ord(ch):04x}")


def one_line(text: str, limit: int = 500) -> str:
    """Return `text` with every control, bidi and invisible character shown as an escape."""
    clean = _UNSAFE.sub(_escape, text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"
