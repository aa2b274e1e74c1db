"""How counts and fractions read in every message and report: "1 host", "3 hosts", "66.6%".

Every place that prints a count next to a noun uses `count`, and every place that prints a
coverage or compliance fraction uses `percent`, so the console report, the summary line, the
history table, the trend chart and the HTML pages agree to the digit.
"""

from __future__ import annotations

import math

_IRREGULAR = {"policy": "policies", "this": "these", "is": "are", "was": "were", "entry": "entries"}


def plural(n: int, word: str, many: str | None = None) -> str:
    """Return `word` as it reads after the number `n` ("host" for 1, "hosts" otherwise)."""
    if n == 1:
        return word
    if many is not None:
        return many
    last = word.rsplit(" ", 1)[-1]
    if last in _IRREGULAR:
        return word[: len(word) - len(last)] + _IRREGULAR[last]
    return word + "s"


def count(n: int, word: str, many: str | None = None) -> str:
    """Return "1 host", "0 hosts", "2 new failures": the number and the noun that agrees with it."""
    return f"{n} {plural(n, word, many)}"


def percent(fraction: float | None, *, none: str = "n/a") -> str:
    """Return a fraction as "66.6%": one decimal, rounded down; `none` for None (nothing to count)."""
    if fraction is None:
        return none
    # Rounded down, like the report's 4-decimal coverage (reports/build.py): 2 of 3 hosts is 66.6%,
    # and 9,999 of 10,000 is 99.9%, never a "100.0%" that fails --min-coverage 1.0.
    tenths = math.floor(round(fraction * 1000, 6))
    return f"{tenths // 10}.{tenths % 10}%"
