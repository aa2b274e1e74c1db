"""Render the report as one self-contained HTML page for a manager: no script, no external asset."""

from __future__ import annotations

from typing import TextIO

from reports.findings import Finding, flatten
from reports.formats.sections import Tone, drift_groups, waiver_groups
from reports.hosts import Hosts
from reports.model import Drift, ReportHeader, WaiversSection
from scanner.core.results import Status
from scanner.core.sanitize import html_text as esc
from scanner.core.wording import count, percent

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem;color:#1b1f24}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}.s-fail{color:#9a6700;font-weight:bold}.s-error{color:#cf222e;font-weight:bold}
.s-pass{color:#1a7f37}.s-waived{color:#0969da}.s-not_applicable{color:#57606a}
.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{border:1px solid #d0d7de;border-radius:6px;padding:.6rem 1rem}
.card b{display:block;font-size:1.4rem}code{word-break:break-all}
.t-bad{color:#9a6700}.t-worse{color:#cf222e}.t-good{color:#1a7f37}.t-change{color:#0969da}.t-dim{color:#57606a}
"""
# No script, no remote fetch of any kind: the page is one file that works offline.
_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_ORDER = (Status.ERROR, Status.FAIL, Status.WAIVED, Status.PASS, Status.NOT_APPLICABLE)
_LABEL = {
    Status.ERROR: "Not assessed (error)",
    Status.FAIL: "Failing",
    Status.WAIVED: "Waived",
    Status.PASS: "Passing",
    Status.NOT_APPLICABLE: "Not applicable",
}


def _status(status: Status) -> str:
    return f'<span class="s-{status.value}">{esc(status.value.upper().replace("_", " "))}</span>'


def _row(finding: Finding) -> str:
    cells = [
        esc(finding.host),
        esc(finding.rule_id),
        esc(finding.rule_title),
        esc(finding.rule_severity.value),
        _status(finding.status),
        esc(finding.message)
        + (
            f"<br><small>{esc(finding.error_stage)}/{esc(finding.error_reason)}: "
            f"{esc(finding.error_message)}</small>"
            # the rule's message usually already names the read error: say it once
            if finding.error_stage is not None and (finding.error_message or "") not in finding.message
            else ""
        ),
        esc(finding.observed if finding.observed is not None else "-"),
    ]
    ids = f'data-event-uid="{esc(finding.event_uid)}" data-finding-uid="{esc(finding.finding_uid)}"'
    return f"<tr {ids}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>\n"


def _groups(groups: list[tuple[str, Tone, list[str]]]) -> str:
    """Return each group as a heading line and a list; every line is host or file text, escaped."""
    parts = []
    for heading, tone, lines in groups:
        items = "".join(f"<li>{esc(line)}</li>" for line in lines)
        parts.append(f'<p class="t-{tone}"><strong>{esc(heading)}</strong></p>\n<ul>{items}</ul>\n')
    return "".join(parts)


def _drift_section(drift: Drift | None) -> str:
    """Return the changes since the previous scan, as the console's Drift row shows them."""
    if drift is None:
        return ""
    head = (
        f"<h2>Changes since the previous scan</h2>\n<p>Since scan <code>{esc(drift.previous_scan_id[:8])}</code> "
        f"({esc(drift.previous_started_at)}).</p>\n"
    )
    return head + (_groups(drift_groups(drift)) or "<p>No change.</p>\n")


def _waivers_section(section: WaiversSection | None) -> str:
    """Return the waivers expiring, expired and matching nothing, as the console's Waivers row shows them."""
    if section is None:
        return ""
    head = f"<h2>Waivers</h2>\n<p>Waivers file <code>{esc(section.file)}</code>.</p>\n"
    return head + (_groups(waiver_groups(section)) or "<p>Every waiver is in force and matches.</p>\n")


def _needs_attention(finding: Finding) -> bool:
    return finding.status in (Status.ERROR, Status.FAIL)


def render(header: ReportHeader, hosts: Hosts, out: TextIO) -> None:
    """Write the HTML page to `out`: headline counts, hosts needing attention, then every finding."""
    scan, summary = header.scan, header.summary
    # Section titles carry counts, so the hosts are read once to count and once per section,
    # one host at a time (docs/performance.md, memory).
    attention = total = 0
    for finding in flatten(header, hosts):
        total += 1
        attention += _needs_attention(finding)
    cards = "".join(
        f'<div class="card">{esc(_LABEL[s])}<b>{summary.hosts_by_status.get(s.value, 0)}</b></div>'
        for s in _ORDER
    )
    table_head = (
        "<tr><th>Host</th><th>Rule</th><th>Title</th><th>Severity</th><th>Status</th>"
        "<th>Details</th><th>Stored value</th></tr>\n"
    )
    interrupted = (
        "<p><strong>This scan was interrupted: the report is partial.</strong></p>"
        if scan.interrupted
        else ""
    )
    out.write(
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>natt-audit report {esc(scan.id)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>NAT-T compliance report</h1>\n{interrupted}"
        f"<p>Scan <code>{esc(scan.id)}</code>, {esc(scan.started_at)} to {esc(scan.finished_at)}; "
        f"policies: {esc(', '.join(scan.policies))}; "
        f"tool {esc(header.tool.name)} {esc(header.tool.version)}.</p>\n"
        f"<p>{count(summary.hosts_total, 'host')}; coverage {percent(summary.coverage)} "
        "(hosts read successfully).</p>\n"
        f'<div class="cards">{cards}</div>\n'
        f"{_drift_section(header.drift)}{_waivers_section(header.waivers)}"
        f"<h2>Needs attention ({attention})</h2>\n"
    )
    if attention:
        out.write(f"<table>\n{table_head}")
        for finding in flatten(header, hosts):
            if _needs_attention(finding):
                out.write(_row(finding))
        out.write("</table>\n")
    else:
        out.write("<p>Nothing.</p>\n")
    out.write(
        f"<h2>Hosts ({len(hosts)})</h2>\n<table>\n"
        "<tr><th>Host</th><th>Address</th><th>Status</th><th>Operating system</th></tr>\n"
    )
    for h in hosts:
        out.write(
            f"<tr><td>{esc(h.name)}</td><td>{esc(h.address)}:{h.port}</td><td>{_status(h.status)}</td>"
            f"<td>{esc(h.os.caption or h.os.version) if h.os is not None else '-'}</td></tr>\n"
        )
    out.write(f"</table>\n<h2>All findings ({total})</h2>\n<table>\n{table_head}")
    for finding in flatten(header, hosts):
        out.write(_row(finding))
    out.write("</table>\n</body>\n</html>\n")
