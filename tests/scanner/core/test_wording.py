"""Counts agree with their nouns and every percentage has one precision, rounded down."""

from __future__ import annotations

import pytest

from scanner.core.wording import count, percent, plural


@pytest.mark.parametrize(
    ("n", "word", "expected"),
    [
        (0, "host", "0 hosts"),
        (1, "host", "1 host"),
        (2, "new failure", "2 new failures"),
        (1, "new failure", "1 new failure"),
        (3, "policy", "3 policies"),
        (2, "address", "2 addresses"),
    ],
)
def test_count(n: int, word: str, expected: str) -> None:
    assert count(n, word, "addresses" if word == "address" else None) == expected


def test_plural_of_a_verb() -> None:
    assert (plural(1, "is"), plural(5, "is")) == ("is", "are")


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [
        (2 / 3, "66.6%"),
        (0.6666, "66.6%"),
        (0.57, "57.0%"),
        (0.9999, "99.9%"),
        (1.0, "100.0%"),
        (0.0, "0.0%"),
        (None, "n/a"),
    ],
)
def test_percent_rounds_down_to_one_decimal(fraction: float | None, expected: str) -> None:
    assert percent(fraction) == expected


def test_the_drift_line_counts_like_a_person() -> None:
    from reports.model import Drift, FindingDrift
    from scanner.core.results import Severity, Status
    from scanner.engine.scan import drift_line

    failure = FindingDrift(
        host="h", rule_id="R", finding_uid="u", severity=Severity.HIGH, before=Status.PASS, after=Status.FAIL
    )
    drift = Drift(
        previous_scan_id="0123456789",
        previous_started_at="2026-11-26T01:00:00Z",
        new_failures=[failure],
        resolved_failures=[],
        changed_failures=[],
        changed_settings=[],
        newly_unreachable=[],
        reachable_again=[],
        joined=[],
        left=[],
    )
    assert drift_line(drift).startswith(
        "since scan 01234567 (2026-11-26T01:00:00Z): 1 new failure, 0 resolved, 0 hosts"
    )
