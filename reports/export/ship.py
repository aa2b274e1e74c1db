"""Export a report through the spool to every destination, and `ship` what is still pending."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reports.export.destinations import Destination, DestinationError, Kind, load_token, parse_destination
from reports.export.hec import HecClient
from reports.export.spool import Spool, SpoolError
from reports.export.syslog import SyslogSender
from reports.findings import Finding, JsonValue, flatten
from reports.formats import render
from reports.hosts import Hosts
from reports.model import ReportHeader
from scanner.core.atomic import atomic_text
from scanner.core.exitcodes import ExitCode
from scanner.core.formats import EXPORT_FORMATS, Format
from scanner.core.sanitize import one_line
from scanner.core.wording import count

# Exit status of `export`/`ship` (and what `scan --export` adds): some finding did not reach a
# destination (down, refused, dead-lettered). It stays in the spool; `natt-audit ship` resends it.
EXIT_UNDELIVERED = ExitCode.UNDELIVERED

# File destinations: the format follows the extension unless -f names one.
SUFFIX_FORMATS: tuple[tuple[str, str], ...] = (
    (".ocsf.jsonl", "ocsf"),
    (".ocsf", "ocsf"),
    (".ecs.jsonl", "ecs"),
    (".hec.jsonl", "hec"),
    (".junit.xml", "junit"),
    (".jsonl", "jsonl"),
    (".ndjson", "jsonl"),
    (".csv", "csv"),
    (".cef", "cef"),
    (".xml", "junit"),
    (".html", "html"),
    (".htm", "html"),
    (".json", "json"),
)


@dataclass(frozen=True)
class DestinationOutcome:
    """What happened at one destination."""

    destination: str
    total: int  # findings meant for it
    delivered: int  # acknowledged in this run
    already: int  # acknowledged by an earlier run
    pending: int  # still in the spool for `ship`
    dead_lettered: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Return whether every finding reached the destination."""
        return self.pending == 0 and self.dead_lettered == 0 and self.error is None


@dataclass(frozen=True)
class ExportSummary:
    """The outcome of an export or a ship run, per destination."""

    spool_dir: str
    scans: tuple[str, ...]
    findings: int
    destinations: tuple[DestinationOutcome, ...] = field(default_factory=tuple)

    @property
    def complete(self) -> bool:
        """Return whether every destination has every finding."""
        return all(d.ok for d in self.destinations)

    @property
    def exit_code(self) -> int:
        """Return 0 when everything was delivered, EXIT_UNDELIVERED otherwise."""
        return 0 if self.complete else EXIT_UNDELIVERED

    def lines(self) -> list[str]:
        """Return a human summary, one line per destination."""
        out = [f"spool {self.spool_dir}: {count(self.findings, 'finding')} in {count(len(self.scans), 'scan')}"]
        for d in self.destinations:
            state = "ok" if d.ok else "INCOMPLETE"
            line = (
                f"{one_line(d.destination, 200)}: {state}: {d.delivered} delivered, {d.already} already "
                f"delivered, {d.pending} pending, {d.dead_lettered} dead-lettered"
            )
            if d.error:
                line += f" ({one_line(d.error, 300)})"
            out.append(line)
        return out


def file_format(path: str, explicit: str | None) -> str:
    """Return the format of a file destination: -f when given, else by extension, else jsonl."""
    if explicit is not None:
        return explicit
    lowered = path.lower()
    for suffix, name in SUFFIX_FORMATS:
        if lowered.endswith(suffix):
            return name
    return "jsonl"


Sender = Callable[
    [list[Finding], Callable[[list[str]], None], Callable[[list[dict[str, JsonValue]]], None]], str | None
]


def _sender(destination: Destination, env: Mapping[str, str] | None) -> Sender:
    if destination.kind is Kind.HEC:
        client = HecClient(destination, load_token(destination, env))
        return client.deliver
    syslog = SyslogSender(destination)

    def send(
        findings: list[Finding],
        on_acked: Callable[[list[str]], None],
        on_dead: Callable[[list[dict[str, JsonValue]]], None],
    ) -> str | None:
        del on_dead  # syslog has no rejection: a frame is taken or the connection fails
        return syslog.deliver(findings, on_acked)

    return send


def _deliver(
    spool: Spool, destination: Destination, scan_ids: Sequence[str], env: Mapping[str, str] | None
) -> DestinationOutcome:
    total = delivered = already = pending = dead = 0
    error: str | None = None
    spool.register(destination)
    for scan_id in scan_ids:
        spool.assign(destination, scan_id)
    try:
        sender = _sender(destination, env)
    except DestinationError as exc:
        sender, error = None, f"{destination.text}: {exc}"
    for scan_id in scan_ids:
        findings = spool.load(scan_id)
        acked, dead_set = spool.done(destination, scan_id)
        total += len(findings)
        already += sum(f.event_uid in acked for f in findings)
        dead += sum(f.event_uid in dead_set for f in findings)
        todo = [f for f in findings if f.event_uid not in acked and f.event_uid not in dead_set]
        if not todo:
            continue
        if sender is None or error is not None:
            pending += len(todo)  # the destination already failed in this run: do not hammer it
            continue
        done: set[str] = set()

        def on_acked(uids: list[str], scan: str = scan_id, seen: set[str] = done) -> None:
            spool.mark(destination, scan, uids)
            seen.update(uids)

        def on_dead(records: list[dict[str, JsonValue]], scan: str = scan_id, seen: set[str] = done) -> None:
            spool.dead_letter(destination, records)
            uids = [str(r["event_uid"]) for r in records]
            spool.mark(destination, scan, uids, dead=True)
            seen.update(uids)

        before_dead = len(spool.done(destination, scan_id)[1])
        error = sender(todo, on_acked, on_dead)
        now_acked, now_dead = spool.done(destination, scan_id)
        newly_dead = len(now_dead) - before_dead
        dead += newly_dead
        delivered += sum(f.event_uid in now_acked for f in todo)
        pending += sum(f.event_uid not in now_acked and f.event_uid not in now_dead for f in todo)
    return DestinationOutcome(destination.text, total, delivered, already, pending, dead, error)


def _write_file(
    header: ReportHeader, hosts: Hosts, destination: Destination, fmt: str | None, count: int
) -> DestinationOutcome:
    assert destination.path is not None
    name = file_format(destination.path, fmt)
    if name not in {f.value for f in EXPORT_FORMATS}:
        return DestinationOutcome(destination.text, count, 0, 0, count, 0, f"unknown file format {name!r}")
    try:
        with atomic_text(destination.path) as out:
            render(header, hosts, Format(name), out, color=False)
    except OSError as exc:
        return DestinationOutcome(
            destination.text, count, 0, 0, count, 0, f"cannot write {destination.path}: {exc.strerror or exc}"
        )
    return DestinationOutcome(destination.text, count, count, 0, 0, 0, None)


def export_report(
    header: ReportHeader,
    hosts: Hosts,
    destinations: Sequence[Destination],
    spool_dir: str | Path,
    *,
    file_format: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ExportSummary:
    """Spool the report's findings (fsync, atomic rename), then deliver them to every destination.

    Raises SpoolError when the spool cannot be written: nothing is sent that is not spooled first.
    """
    spool = Spool(spool_dir)
    scan_id = header.scan.id
    # Still a list: the spool file is written whole and the senders take lists (docs/performance.md,
    # "Not streamed yet").
    findings = list(flatten(header, hosts))
    spool.write_scan(scan_id, findings)
    outcomes: list[DestinationOutcome] = []
    for destination in destinations:
        if destination.is_network:
            outcomes.append(_deliver(spool, destination, [scan_id], env))
        else:
            outcomes.append(_write_file(header, hosts, destination, file_format, len(findings)))
    return ExportSummary(str(spool.root), (scan_id,), len(findings), tuple(outcomes))


def ship(
    spool_dir: str | Path,
    destinations: Sequence[Destination] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> ExportSummary:
    """Resend every pending finding of every spooled scan, with its original event_uid.

    Without destinations, ships to every network destination recorded in the spool.
    """
    spool = Spool(spool_dir)
    scan_ids = spool.scan_ids()
    if destinations is None:
        destinations = [parse_destination(text) for text in spool.destinations()]
    outcomes: list[DestinationOutcome] = []
    total = sum(len(spool.load(s)) for s in scan_ids)
    for destination in destinations:
        if not destination.is_network:
            outcomes.append(
                DestinationOutcome(
                    destination.text,
                    0,
                    0,
                    0,
                    0,
                    0,
                    "files are written by `export`; ship sends to network destinations",
                )
            )
            continue
        # Only the scans exported to this destination: a scan exported to a file alone, or to
        # another SIEM, is never sent here by a later `ship` (docs/siem.md).
        outcomes.append(_deliver(spool, destination, spool.due(destination, scan_ids), env))
    return ExportSummary(str(spool.root), tuple(scan_ids), total, tuple(outcomes))


__all__ = ["EXIT_UNDELIVERED", "DestinationOutcome", "ExportSummary", "SpoolError", "export_report", "ship"]
