"""Render a report for a person at a terminal (rich), with all host text made inert."""

from __future__ import annotations

from collections.abc import Iterable
from io import StringIO
from typing import TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from reports.build import MODE_KEYS
from reports.formats.sections import drift_groups, waiver_groups
from reports.hosts import Hosts
from reports.model import Drift, HostReport, InventorySection, ReportHeader, WaiversSection
from scanner.core.models import VALUE_NAME
from scanner.core.results import RuleResult, Status
from scanner.core.sanitize import console_text as safe_text
from scanner.core.semantics import Integrity, Setting
from scanner.core.wording import count, percent, plural

DEFAULT_WIDTH = 120
# Above this many passing hosts the table lists none of them and prints one count line instead:
# the console is for what needs attention; the JSON report always lists every host.
PASS_ROWS_LIMIT = 20

# Display caps for host-supplied text (characters before escaping); the JSON report keeps it all.
NAME_LIMIT = 100
CAPTION_LIMIT = 120
MESSAGE_LIMIT = 400
VALUE_LIMIT = 120

_STATUS_LABEL = {
    Status.ERROR: ("ERROR", "bold red"),
    Status.FAIL: ("FAIL", "bold yellow"),
    Status.WAIVED: ("WAIVED", "cyan"),
    Status.PASS: ("PASS", "green"),
    Status.NOT_APPLICABLE: ("N/A", "dim"),
}
_SUMMARY_ORDER = (Status.ERROR, Status.FAIL, Status.WAIVED, Status.PASS, Status.NOT_APPLICABLE)
_MODE_LABEL = {"0": "mode 0", "1": "mode 1", "2": "mode 2", "unknown": "unknown", "not_applicable": "n/a"}


def _status_text(status: Status) -> Text:
    label, style = _STATUS_LABEL[status]
    return Text(label, style=style)


def _join(parts: list[Text], separator: str) -> Text:
    return Text(separator).join(parts)


_TONE_STYLE = {
    "bad": "bold yellow",
    "worse": "bold red",
    "good": "green",
    "change": "cyan",
    "neutral": "",
    "dim": "dim",
}


def _waiver_lines(section: WaiversSection) -> Text:
    lines = [safe_text(section.file, limit=NAME_LIMIT)]
    for title, tone, entries in waiver_groups(section):
        style = "red" if tone == "worse" else "yellow"
        for entry in entries:
            line = Text(f"{title}: ", style=style)
            line.append_text(safe_text(entry, limit=NAME_LIMIT * 2))
            lines.append(line)
    return _join(lines, "\n")


def _inventory_line(section: InventorySection) -> Text:
    """Return the inventory section as one line: each source, its hosts and skipped counts; disagreements."""
    parts: list[Text] = []
    for source in section.sources:
        part = safe_text(source.name, limit=NAME_LIMIT)
        part.append(f" {source.hosts} hosts")
        if source.skipped:
            counts = ", ".join(f"{count} {reason}" for reason, count in sorted(source.skipped.items()))
            part.append_text(safe_text(f" (skipped {sum(source.skipped.values())}: {counts})", limit=NAME_LIMIT))
        parts.append(part)
    if section.os_version_disagreements:
        count = section.os_version_disagreements
        hosts = "host" if count == 1 else "hosts"
        parts.append(Text(f"{count} {hosts}: OS read differs from the inventory", style="yellow"))
    return _join(parts, " · ")


DRIFT_LIMIT = 10  # hosts named per drift line; `natt-audit diff` lists them all


def _names(names: list[str]) -> Text:
    shown = [safe_text(name, limit=NAME_LIMIT) for name in names[:DRIFT_LIMIT]]
    text = _join(shown, ", ")
    if len(names) > DRIFT_LIMIT:
        text.append(f" and {len(names) - DRIFT_LIMIT} more", style="dim")
    return text


def _drift_lines(drift: Drift) -> Text:
    head = Text("since scan ")
    head.append_text(safe_text(f"{drift.previous_scan_id[:8]} ({drift.previous_started_at})", limit=NAME_LIMIT))
    lines = [head]
    for heading, tone, names in drift_groups(drift):
        line = Text(f"{heading}: ", style=_TONE_STYLE[tone])
        line.append_text(_names(names))
        lines.append(line)
    if len(lines) == 1:
        lines.append(Text("no change", style="dim"))
    return _join(lines, "\n")


def _summary_panel(report: ReportHeader, hosts: Hosts) -> Panel:
    """Return the headline panel; `report` is the header, `hosts` are counted, not read."""
    summary = report.summary
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")

    counts = [Text(f"{summary.hosts_total} total")]
    for status in _SUMMARY_ORDER:
        n = summary.hosts_by_status.get(status.value, 0)
        label, style = _STATUS_LABEL[status]
        counts.append(Text(f"{n} {label.lower()}", style=style if n else "dim"))
    grid.add_row("Hosts", _join(counts, " · "))

    read = hosts.read_count()
    complete = read == len(hosts) and read > 0
    coverage = Text()
    coverage.append(percent(summary.coverage), style="bold green" if complete else "bold red")
    coverage.append(f"  ({read} of {count(summary.hosts_total, 'host')} read")
    unread = summary.hosts_total - read
    coverage.append(f"; {unread} could not be read)" if unread else ")")
    grid.add_row("Coverage", coverage)
    if len(summary.sites) > 1:  # one site (every local scan without sites) would repeat the line above
        sites = [
            safe_text(f"{name}: {site.read}/{site.hosts} read ({site.coverage * 100:.2f} %)", limit=NAME_LIMIT + 40)
            for name, site in summary.sites.items()
        ]
        grid.add_row("Sites", _join(sites, " · "))

    modes = [
        safe_text(f"{_MODE_LABEL.get(key, key)}: {summary.modes[key]}", limit=NAME_LIMIT)
        for key in (*MODE_KEYS, *sorted(set(summary.modes) - set(MODE_KEYS)))
        if summary.modes.get(key)
    ]
    grid.add_row("Modes", _join(modes, " · ") if modes else Text("none (no host read)", style="dim"))
    grid.add_row("Requests", Text(str(summary.requests_total)))
    if summary.auth_rejected:
        rejected = f"{summary.auth_rejected} host(s) rejected the scan account (error auth/unauthorized)"
        grid.add_row("Logons", Text(rejected, style="bold red"))
    policies = [safe_text(p, limit=NAME_LIMIT) for p in report.scan.policies]
    grid.add_row("Policies", _join(policies, ", ") if policies else Text("none", style="dim"))
    scan = safe_text(report.scan.id, limit=NAME_LIMIT)
    scan.append("  ")
    scan.append_text(safe_text(report.scan.started_at, limit=40))
    scan.append(" → ")
    scan.append_text(safe_text(report.scan.finished_at, limit=40))
    grid.add_row("Scan", scan)
    if report.scan.interrupted:
        grid.add_row("State", Text("INTERRUPTED: partial report", style="bold red"))
    if report.scan.inventory is not None:
        grid.add_row("Inventory", safe_text(report.scan.inventory, limit=NAME_LIMIT))
    if report.inventory is not None:
        label = "Sources" if report.inventory.sources else "OS facts"
        grid.add_row(label, _inventory_line(report.inventory))
    if report.waivers is not None:
        grid.add_row("Waivers", _waiver_lines(report.waivers))
    if report.drift is not None:
        grid.add_row("Drift", _drift_lines(report.drift))

    title = safe_text(f"{report.tool.name} {report.tool.version} scan report", "bold", limit=NAME_LIMIT)
    return Panel(grid, title=title, title_align="left", box=box.ROUNDED, expand=True)


def _host_cell(host: HostReport) -> Text:
    cell = safe_text(host.name, "bold", limit=NAME_LIMIT)
    if host.status is Status.PASS:
        return cell  # passing rows stay one line: name, status, mode, OS version
    address = f"[{host.address}]" if ":" in host.address else host.address
    cell.append("\n")
    cell.append_text(safe_text(f"{address}:{host.port}", "dim", limit=NAME_LIMIT))
    if host.tags:
        tags = [safe_text(f"{key}={host.tags[key]}", "dim", limit=NAME_LIMIT) for key in sorted(host.tags)]
        cell.append("\n")
        cell.append_text(_join(tags, " "))
    return cell


def _os_cell(host: HostReport) -> Text:
    if host.os is None:
        return Text("-", style="dim")
    cell = safe_text(host.os.version, limit=40)
    if host.os.service_pack:
        cell.append(f" SP{host.os.service_pack}")
    if host.status is Status.PASS:
        return cell  # passing rows stay one line; the JSON report has family and caption
    if host.setting is not None:
        cell.append(f" ({host.setting.os_family.value})", style="dim")
    if host.os.caption:
        cell.append("\n")
        cell.append_text(safe_text(host.os.caption, limit=CAPTION_LIMIT))
    return cell


def _raw_value(data: int | str | list[str] | None) -> Text:
    if data is None:
        return Text("(data not readable)", style="dim")
    if isinstance(data, int):
        return Text(str(data) if 0 <= data <= 9 else f"{data} (0x{data:x})")
    if isinstance(data, str):
        return safe_text(f'"{data}"', limit=VALUE_LIMIT)
    return safe_text("[" + ", ".join(f'"{item}"' for item in data) + "]", limit=VALUE_LIMIT)


def _key_name(key: str) -> str:
    return key.rsplit("\\", 1)[-1]


def _setting_lines(setting: Setting) -> list[Text]:
    lines: list[Text] = []
    if setting.applicable_key is not None:
        line = safe_text(_key_name(setting.applicable_key), "dim")
        line.append(": ", style="dim")
        if setting.present:
            line.append_text(safe_text(setting.raw_type or "?"))
            line.append(" ")
            line.append_text(_raw_value(setting.raw_value))
            if not setting.name_canonical and setting.value_name is not None:
                line.append(" name ")
                line.append_text(safe_text(f'"{setting.value_name}"', limit=VALUE_LIMIT))
        else:
            line.append("no value" if setting.key_present else "key absent")
            line.append(" (default 0)", style="dim")
        lines.append(line)
    for stray in setting.stray:
        line = Text("stray ", style="yellow")
        line.append_text(safe_text(_key_name(stray.key)))
        line.append(": ")
        line.append_text(safe_text(stray.type))
        line.append(" ")
        line.append_text(_raw_value(stray.data))
        if stray.name != VALUE_NAME:
            line.append(" name ")
            line.append_text(safe_text(f'"{stray.name}"', limit=VALUE_LIMIT))
        line.append(" (ignored by this OS)", style="dim")
        lines.append(line)
    return lines


def _result_lines(results: list[RuleResult]) -> list[Text]:
    # Rules with the same status and message (an unread host: every rule in error for the same
    # reason) share one line, so one host's evidence stays a few lines long.
    groups: dict[tuple[Status, str], list[RuleResult]] = {}
    for result in results:
        if result.status is not Status.PASS:
            groups.setdefault((result.status, result.message), []).append(result)
    lines: list[Text] = []
    for (status, message), members in groups.items():
        label, style = _STATUS_LABEL[status]
        rules = [safe_text(f"{r.rule_id} ({r.severity.value})", limit=NAME_LIMIT) for r in members]
        line = _join(rules, ", ")
        line.append(f" {label.lower()}: ", style=style)
        line.append_text(safe_text(message, limit=MESSAGE_LIMIT))
        lines.append(line)
    return lines


def _evidence_cell(host: HostReport) -> Text:
    lines: list[Text] = []
    if host.error is not None:
        line = Text(f"{host.error.stage.value}/", style="red")
        line.append_text(safe_text(host.error.reason, "red", limit=NAME_LIMIT))
        line.append(": ")
        line.append_text(safe_text(host.error.message, limit=MESSAGE_LIMIT))
        lines.append(line)
    if host.error is not None and all(r.status is Status.ERROR for r in host.results):
        # Every rule is in error for the reason just shown: say so once instead of repeating it.
        if host.results:
            ids = ", ".join(r.rule_id for r in host.results)
            lines.append(Text(f"{ids}: error (host not read)", style="dim"))
    elif host.status is not Status.PASS:
        lines.extend(_result_lines(host.results))
        if host.setting is not None:
            lines.extend(_setting_lines(host.setting))
    return _join(lines, "\n")


def _mode_text(host: HostReport) -> Text:
    if host.setting is None:
        return Text("-", style="dim")
    mode = host.setting.effective_mode
    return Text(_MODE_LABEL[str(mode)].removeprefix("mode "), style="bold" if mode == 2 else "")


def _integrity_text(host: HostReport) -> Text:
    if host.setting is None:
        return Text("-", style="dim")
    integrity = host.setting.integrity
    style = "dim" if integrity is Integrity.NOT_APPLICABLE else "" if integrity is Integrity.OK else "yellow"
    label = "n/a" if integrity is Integrity.NOT_APPLICABLE else integrity.value
    return Text(label, style=style)


def _hosts_table(hosts: Iterable[HostReport]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, expand=True, show_edge=False, pad_edge=False)
    table.add_column("Status", no_wrap=True)
    table.add_column("Host", overflow="fold", ratio=2, min_width=10)
    table.add_column("Mode", overflow="fold")
    table.add_column("Integrity", overflow="fold")
    table.add_column("OS", overflow="fold", ratio=2, min_width=10)
    table.add_column("Evidence", overflow="fold", ratio=4, min_width=20)
    for host in hosts:
        table.add_row(
            _status_text(host.status),
            _host_cell(host),
            _mode_text(host),
            _integrity_text(host),
            _os_cell(host),
            _evidence_cell(host),
        )
    return table


def render_console(
    header: ReportHeader,
    hosts: Hosts,
    out: TextIO,
    *,
    color: bool,
    width: int | None = None,
    max_pass_rows: int = PASS_ROWS_LIMIT,
) -> None:
    """Write the console report to `out`; a pure function of the report (no environment, no clock)."""
    buffer = StringIO()
    console = Console(
        file=buffer,
        width=width or DEFAULT_WIDTH,
        color_system="standard" if color else None,
        force_terminal=color,
        force_interactive=False,
        no_color=not color,
        markup=False,
        emoji=False,
        highlight=False,
        legacy_windows=False,
        _environ={},  # ignore COLUMNS, NO_COLOR, TERM...: same report, same text
    )
    # Hosts may be on disk (reports/hostspill.py): count and order them without reading them,
    # then read only the rows shown.
    passing = hosts.count(Status.PASS)
    hide_passing = passing > max_pass_rows
    shown = hosts.worst_first(skip=Status.PASS if hide_passing else None)

    parts: list[RenderableType] = [_summary_panel(header, hosts)]
    if len(hosts) - (passing if hide_passing else 0) > 0:
        parts.append(_hosts_table(shown))
    if hide_passing:
        parts.append(
            Text(
                f"{count(passing, 'passing host')} {plural(passing, 'is')} not listed;"
                " the JSON report (-f json) lists every host.",
                style="dim",
            )
        )
    elif len(hosts) == 0:
        parts.append(Text("No hosts in the inventory.", style="dim"))
    console.print(Group(*parts))
    text = buffer.getvalue()
    if not color:
        # Rich pads cells with spaces; trailing blanks only make diffs and goldens noisy.
        text = "\n".join(line.rstrip() for line in text.split("\n"))
    out.write(text)
