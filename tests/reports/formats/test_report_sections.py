"""The HTML report shows the drift and waiver sections the console shows, with the same words."""

from __future__ import annotations

import io
from collections.abc import Callable

from reports.formats import console, html_report
from reports.hosts import Report
from reports.model import Drift, FindingDrift, HostDrift, SettingDrift, WaiverEntry, WaiversSection
from scanner.core.results import Severity, Status, finding_uid
from tests.support.sample_report import make_sample_report

HOSTILE = "<script>alert(1)</script>\u202e"


def with_sections() -> Report:
    """Return the sample report with a drift section and a waivers section, host text hostile."""
    report = make_sample_report()
    drift = Drift(
        previous_scan_id="0f1e2d3c-aaaa-bbbb-cccc-000000000000",
        previous_started_at="2026-11-26T01:00:00Z",
        new_failures=[
            FindingDrift(
                host="srv-mode2",
                rule_id="NATT-001",
                finding_uid=finding_uid("NATT-001", "srv-mode2"),
                severity=Severity.HIGH,
                before=Status.PASS,
                after=Status.FAIL,
            )
        ],
        resolved_failures=[],
        changed_failures=[],
        changed_settings=[SettingDrift(host="srv-mode2", field="effective_mode", before="1", after="2")],
        newly_unreachable=[HostDrift(host=HOSTILE, reason="connect/refused")],
        reachable_again=[],
        joined=["new-1", "new-2"],
        left=[],
    )
    entry = WaiverEntry(label="W-1", rules=["NATT-001"], expires="2026-11-20", owner=HOSTILE, source="w.yaml:2")
    waivers = WaiversSection(file="w.yaml", warn_days=14, expiring=[], expired=[entry], unmatched=[])
    header = report.header.model_copy(update={"drift": drift, "waivers": waivers})
    return Report(header, report.hosts)


def _render(module: object, report: Report) -> str:
    out = io.StringIO()
    module.render(report.header, report.hosts, out)  # type: ignore[attr-defined]
    return out.getvalue()


def test_html_shows_drift_and_waivers_like_the_console(check_golden: Callable[[str, str], None]) -> None:
    report = with_sections()
    page = _render(html_report, report)
    check_golden("report.html-sections.golden", page)
    out = io.StringIO()
    console.render_console(report.header, report.hosts, out, color=False, width=200)
    text = out.getvalue()
    for heading in ("1 new failure", "1 setting change", "1 newly unreachable", "2 joined", "expired (no effect)"):
        assert heading in page
        assert heading in text
    assert "<h2>Changes since the previous scan</h2>" in page
    assert "<h2>Waivers</h2>" in page
    assert "<script>" not in page  # host text is escaped, never markup
    assert "&lt;script&gt;" in page
    assert "\u202e" not in page


def test_html_without_history_or_waivers_has_neither_section() -> None:
    page = _render(html_report, make_sample_report())
    assert "Changes since the previous scan" not in page
    assert "<h2>Waivers</h2>" not in page
