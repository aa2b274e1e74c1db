"""The HTML history report: one self-contained file, charts drawn by our own inline script.

Charts: compliance and coverage over time (line), effective modes by tag (stacked bars, newest
scan) and failing hosts by site (bars, newest scan). No CDN, no external resource: the data sits
in a `application/json` block, the script draws SVG with `textContent` only (host text is never
parsed as HTML), and a Content-Security-Policy allows exactly that script and style by hash.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Protocol

from scanner.core.sanitize import html_text, visible
from scanner.core.wording import count, percent
from scanner.history.store import HostRow, ScanRow

SITE_TAG = "site"
MODE_ORDER = ("0", "1", "2", "unknown", "not_applicable", "unread")
MAX_TAG_ROWS = 40


class _Hosts(Protocol):
    def hosts(self, scan_id: str) -> list[HostRow]: ...


_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#1d2433;background:#fff}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px;border-bottom:1px solid #dde}
th{text-align:left}.num{text-align:right}.chart{display:block;margin:8px 0}
.legend span{display:inline-block;margin-right:14px;font-size:13px}
.sw{display:inline-block;width:10px;height:10px;margin-right:4px}
.m0{background:#2e7d32}.m1{background:#1565c0}.m2{background:#c62828}.mu{background:#ef6c00}
.mn{background:#9e9e9e}.mr{background:#424242}
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var data = JSON.parse(document.getElementById("natt-data").textContent);
  var COLORS = {"0": "#2e7d32", "1": "#1565c0", "2": "#c62828", "unknown": "#ef6c00",
                "not_applicable": "#9e9e9e", "unread": "#424242"};
  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    for (var key in attrs) { node.setAttribute(key, String(attrs[key])); }
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function label(parent, x, y, text, anchor) {
    var t = el("text", {x: x, y: y, "font-size": 11, "text-anchor": anchor || "start", fill: "#333"}, parent);
    t.textContent = text;
    return t;
  }
  function svg(id, width, height) {
    var host = document.getElementById(id);
    var root = el("svg", {width: width, height: height, viewBox: "0 0 " + width + " " + height,
                          role: "img", "class": "chart"}, host);
    return root;
  }
  function lineChart() {
    var scans = data.scans, W = 760, H = 260, L = 48, R = 16, T = 16, B = 40;
    var root = svg("chart-time", W, H);
    for (var p = 0; p <= 100; p += 25) {
      var gy = T + (H - T - B) * (1 - p / 100);
      el("line", {x1: L, y1: gy, x2: W - R, y2: gy, stroke: "#e0e0e0"}, root);
      label(root, L - 6, gy + 4, p + "%", "end");
    }
    function x(i) { return scans.length < 2 ? (L + W - R) / 2 : L + (W - L - R) * i / (scans.length - 1); }
    function y(v) { return T + (H - T - B) * (1 - v); }
    [["compliance", "#2e7d32"], ["coverage", "#1565c0"]].forEach(function (s) {
      var pts = scans.map(function (scan, i) { return x(i) + "," + y(scan[s[0]]); }).join(" ");
      el("polyline", {points: pts, fill: "none", stroke: s[1], "stroke-width": 2, "class": "series " + s[0]}, root);
      scans.forEach(function (scan, i) {
        var c = el("circle", {cx: x(i), cy: y(scan[s[0]]), r: 3.5, fill: s[1], "class": "point " + s[0]}, root);
        var tip = el("title", {}, c);
        tip.textContent = scan.started_at + " " + s[0] + " " + (scan[s[0]] * 100).toFixed(1) + "%";
      });
    });
    scans.forEach(function (scan, i) {
      if (scans.length <= 12 || i % Math.ceil(scans.length / 12) === 0 || i === scans.length - 1) {
        // First and last labels hug the plot edges so they are never clipped by the SVG box;
        // the time of day is shown because several scans a day are common (reruns, resumes).
        var edge = i === 0 ? "start" : (i === scans.length - 1 ? "end" : "middle");
        label(root, x(i), H - B + 16, scan.started_at.slice(0, 16).replace("T", " "), edge);
      }
    });
    root.setAttribute("data-drawn", String(scans.length));
  }
  function stacked() {
    var rows = data.modes_by_tag, W = 760, rowH = 22, L = 220, R = 60;
    var H = Math.max(40, rows.length * rowH + 10);
    var root = svg("chart-modes", W, H);
    var max = 1;
    rows.forEach(function (r) { max = Math.max(max, r.total); });
    rows.forEach(function (r, i) {
      var yy = 5 + i * rowH, xx = L;
      label(root, L - 8, yy + 14, r.tag, "end");
      data.mode_order.forEach(function (mode) {
        var n = r.modes[mode] || 0;
        if (!n) { return; }
        var w = (W - L - R) * n / max;
        var rect = el("rect", {x: xx, y: yy, width: w, height: rowH - 6, fill: COLORS[mode], "class": "seg"}, root);
        el("title", {}, rect).textContent = r.tag + ": mode " + mode + ": " + n;
        xx += w;
      });
      label(root, xx + 6, yy + 14, String(r.total));
    });
    root.setAttribute("data-drawn", String(rows.length));
  }
  function bars() {
    var rows = data.failures_by_site, W = 760, rowH = 22, L = 220, R = 60;
    var H = Math.max(40, rows.length * rowH + 10);
    var root = svg("chart-sites", W, H);
    var max = 1;
    rows.forEach(function (r) { max = Math.max(max, r.fail); });
    rows.forEach(function (r, i) {
      var yy = 5 + i * rowH, w = (W - L - R) * r.fail / max;
      label(root, L - 8, yy + 14, r.site, "end");
      var rect = el("rect", {x: L, y: yy, width: Math.max(w, 1), height: rowH - 6, fill: "#c62828",
                             "class": "bar"}, root);
      el("title", {}, rect).textContent = r.site + ": " + r.fail + " failing of " + r.total;
      label(root, L + Math.max(w, 1) + 6, yy + 14, r.fail + " / " + r.total);
    });
    root.setAttribute("data-drawn", String(rows.length));
  }
  lineChart();
  stacked();
  bars();
  document.body.setAttribute("data-charts", "drawn");
})();
"""


def _hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def _script_json(value: object) -> str:
    """Return JSON safe inside a <script> element: no `<`, `>` or `&` can end or open a tag."""
    text = json.dumps(value, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def chart_data(rows: Sequence[ScanRow], hosts: Sequence[HostRow]) -> dict[str, object]:
    """Return the data the charts draw: scans oldest first, and the newest scan's hosts grouped."""
    scans = [
        {
            "id": r.id,
            "started_at": r.started_at,
            "compliance": r.compliance,
            "coverage": r.coverage,
            "fail": r.by_status.get("fail", 0),
            "interrupted": r.interrupted,
        }
        for r in sorted(rows, key=lambda r: (r.started_at, r.id))
    ]
    by_tag: dict[str, dict[str, int]] = {}
    sites: dict[str, dict[str, int]] = {}
    for host in hosts:
        mode = host.effective_mode if host.effective_mode is not None else "unread"
        # Labels reach the page through textContent, which shows a bidi override or zero-width
        # character as what it does: they are spelled as visible escapes (scanner/core/sanitize.py).
        for key, value in sorted(host.tags.items()):
            counts = by_tag.setdefault(visible(f"{key}={value}"), {})
            counts[mode] = counts.get(mode, 0) + 1
        site = visible(host.tags.get(SITE_TAG, "(no site)"))
        entry = sites.setdefault(site, {"fail": 0, "total": 0})
        entry["total"] += 1
        if host.status == "fail":
            entry["fail"] += 1
    if not by_tag and hosts:
        counts = by_tag.setdefault("(all hosts)", {})
        for host in hosts:
            mode = host.effective_mode if host.effective_mode is not None else "unread"
            counts[mode] = counts.get(mode, 0) + 1
    modes = [
        {"tag": tag, "modes": counts, "total": sum(counts.values())}
        for tag, counts in sorted(by_tag.items())[:MAX_TAG_ROWS]
    ]
    failures = [
        {"site": site, "fail": v["fail"], "total": v["total"]}
        for site, v in sorted(sites.items(), key=lambda kv: (-kv[1]["fail"], kv[0]))
    ]
    return {"scans": scans, "modes_by_tag": modes, "failures_by_site": failures, "mode_order": list(MODE_ORDER)}


def _table(rows: Sequence[ScanRow]) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in ("Scan", "Started", "Inventory", "Hosts", "Coverage", "Compliant", "Fail", "Error", "State")
    )
    body = []
    for r in rows:
        cells = [
            html_text(r.id[:8]),
            html_text(r.started_at),
            html_text(r.inventory_id.removeprefix("path:")),  # the id `history --inventory-id` takes
            f'<span class="num">{r.hosts_total}</span>',
            percent(r.coverage),
            percent(r.compliance if r.hosts_total > r.by_status.get("error", 0) else None),
            str(r.by_status.get("fail", 0)),
            str(r.by_status.get("error", 0)),
            "interrupted" if r.interrupted else "complete",
        ]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_history_html(store: _Hosts, rows: Sequence[ScanRow]) -> str:
    """Return the history report for `rows` (newest first); per-host charts use the newest scan."""
    latest = rows[0] if rows else None
    hosts = store.hosts(latest.id) if latest is not None else []
    data = chart_data(rows, hosts)
    legend = "".join(
        f'<span><i class="sw {c}"></i>{html_text(m)}</span>'
        for m, c in (
            ("mode 0", "m0"),
            ("mode 1", "m1"),
            ("mode 2", "m2"),
            ("unknown", "mu"),
            ("n/a", "mn"),
            ("unread", "mr"),
        )
    )
    csp = f"default-src 'none'; script-src '{_hash(_SCRIPT)}'; style-src '{_hash(_STYLE)}'; img-src 'none'"
    newest = html_text(f"{latest.started_at} ({latest.id[:8]})") if latest else "none"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{html_text(csp)}">'
        "<title>natt-audit history</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>natt-audit scan history</h1>"
        f"<p>{count(len(rows), 'scan')}; newest {newest}.</p>"
        '<h2>Compliance and coverage over time</h2><p class="legend">'
        '<span><i class="sw m0"></i>compliant hosts / read hosts</span>'
        '<span><i class="sw m1"></i>coverage: read hosts / all hosts</span></p>'
        '<div id="chart-time"></div>'
        f'<h2>Effective modes by tag (newest scan)</h2><p class="legend">{legend}</p>'
        '<div id="chart-modes"></div>'
        f"<h2>Failing hosts by {SITE_TAG} (newest scan)</h2>"
        '<div id="chart-sites"></div>'
        f"<h2>Scans</h2>{_table(rows)}"
        f'<script type="application/json" id="natt-data">{_script_json(data)}</script>'
        f"<script>{_SCRIPT}</script>"
        "</body></html>\n"
    )
