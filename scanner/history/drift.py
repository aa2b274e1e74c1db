"""Drift between a scan and its baseline, host by host. Pure.

The baseline is a recorded scan of the same inventory (for a scan being recorded: the newest
complete one whose coverage reaches `baseline_min_coverage`, docs/config.md). It decides who
joined, who left and who became unreachable or reachable again. Findings and settings are
compared with each host's *last read*: its entry in the baseline if the baseline read it, else
its newest read in an earlier scan (`Baseline.last_read`, found by the store). So a night where
a host, or the whole estate, could not be read changes nothing about its findings: a failure
seen again is not new, and a failure that is gone is resolved (docs/scheduling.md#drift-across-bad-nights).

A finding is *open* while its result is `fail`; `waived` and `not_applicable` count as not
failing (like the exit code). A result in `error` says nothing about the finding: a host that
cannot be read keeps its findings as they were and shows up in `newly_unreachable` instead.

- new failure: `fail` now; before pass / waived / not_applicable / absent (the host joined or
  the rule is new) / error (the host was never read before).
- resolved failure: `fail` before; now pass / waived / not_applicable on the same host and rule.
  A host that left the inventory is listed in `left`, and a rule dropped from the policy is simply
  no longer evaluated: neither was fixed, so neither is "resolved" nor closes its SIEM finding.
- `fail` -> `error` and `error` -> anything but `fail` are no finding change.
- changed settings: only for hosts read in both scans, one entry per differing field.

Hosts are matched by `scanner.core.results.host_identity` (lower-cased name), as `finding_uid` is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from reports.build import host_sort_key
from reports.hosts import Hosts, Report
from reports.model import Drift, FindingDrift, HostDrift, HostReport, SettingDrift
from scanner.core.results import Status, finding_uid, host_identity

# Setting fields compared between two reads of a host, in report order.
SETTING_FIELDS: tuple[str, ...] = (
    "effective_mode",
    "raw_type",
    "raw_value",
    "integrity",
    "applicable_key",
    "stray",
)


@dataclass(frozen=True)
class Baseline:
    """One host of the baseline scan, with its last read entry (None: never read)."""

    host: HostReport
    last_read: HostReport | None


def _reason(host: HostReport) -> str:
    if host.error is None:
        return "error/unknown"
    return f"{host.error.stage.value}/{host.error.reason}"


def _is_read(host: HostReport) -> bool:
    return host.error is None and host.setting is not None


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _setting_changes(before: HostReport, after: HostReport) -> list[SettingDrift]:
    if before.setting is None or after.setting is None:
        return []
    old = before.setting.model_dump(mode="json")
    new = after.setting.model_dump(mode="json")
    return [
        SettingDrift(host=after.name, field=name, before=_json(old.get(name)), after=_json(new.get(name)))
        for name in SETTING_FIELDS
        if old.get(name) != new.get(name)
    ]


def _finding_changes(
    name: str, before: HostReport | None, after: HostReport | None
) -> tuple[list[FindingDrift], list[FindingDrift], list[FindingDrift]]:
    old = {r.rule_id: r for r in (before.results if before else [])}
    new = {r.rule_id: r for r in (after.results if after else [])}
    opened: list[FindingDrift] = []
    closed: list[FindingDrift] = []
    still: list[FindingDrift] = []
    for rule_id in sorted(set(old) | set(new)):
        was = old.get(rule_id)
        now = new.get(rule_id)
        was_status = was.status if was else None
        now_status = now.status if now else None
        ref = now or was
        assert ref is not None  # rule_id comes from one of the two maps
        drift = FindingDrift(
            host=name,
            rule_id=rule_id,
            finding_uid=ref.finding_id or finding_uid(rule_id, name),
            severity=ref.severity,
            before=was_status,
            after=now_status,
        )
        if now_status is Status.FAIL and was_status is not Status.FAIL:
            opened.append(drift)
        elif was_status is Status.FAIL and now_status not in (None, Status.FAIL, Status.ERROR):
            # Resolved only when the rule ran again on the host and did not fail. A rule dropped
            # from the policy, or a host that left the inventory, was not fixed: it is no longer
            # looked at (the host shows in `left`), and a SIEM must not close its finding.
            closed.append(drift)
        elif was_status is Status.FAIL and now_status is Status.FAIL:
            still.append(drift)
    return opened, closed, still


def _sorted_names(names: Iterable[str]) -> list[str]:
    return sorted(names, key=host_sort_key)


def compute_drift(previous: Report, current: Report) -> Drift:
    """Return what changed from `previous` to `current` (two scans of the same inventory)."""
    return drift_between(
        previous.header.scan.id,
        previous.header.scan.started_at,
        by_identity(previous.hosts),
        by_identity(current.hosts),
    )


def by_identity(hosts: Hosts) -> Iterable[HostReport]:
    """Return `hosts` ordered by `host_identity`, read one at a time when they are on disk."""
    return hosts.ordered(host_identity)


def _as_baseline(host: HostReport | Baseline) -> Baseline:
    # A plain scan entry (`diff A B`) is its own last read, read or not, as drift always was.
    return host if isinstance(host, Baseline) else Baseline(host, host)


def _merge(
    before: Iterable[HostReport | Baseline], after: Iterable[HostReport]
) -> Iterator[tuple[str, Baseline | None, HostReport | None]]:
    """Join two host streams sorted by identity: (identity, before or None, after or None)."""
    olds, news = (_as_baseline(host) for host in before), iter(after)
    old, new = next(olds, None), next(news, None)
    while old is not None or new is not None:
        old_key = host_identity(old.host.name) if old is not None else None
        new_key = host_identity(new.name) if new is not None else None
        if new_key is None or (old_key is not None and old_key < new_key):
            assert old_key is not None
            yield old_key, old, None
            old = next(olds, None)
        elif old_key is None or new_key < old_key:
            yield new_key, None, new
            new = next(news, None)
        else:
            yield new_key, old, new
            old, new = next(olds, None), next(news, None)


def drift_between(
    previous_scan_id: str,
    previous_started_at: str,
    before: Iterable[HostReport | Baseline],
    after: Iterable[HostReport],
) -> Drift:
    """Return the drift between two host streams, each sorted by `host_identity`, one per identity.

    `before` holds the baseline scan's hosts, each either with its last read (`Baseline`) or
    plain (then compared as it is). Only one host of each side is in memory at a time (a history
    scan of 10,000 hosts is read from the database row by row); the result holds the changes only.
    """
    new_failures: list[FindingDrift] = []
    resolved: list[FindingDrift] = []
    changed_failures: list[FindingDrift] = []
    settings: list[SettingDrift] = []
    unreachable: list[HostDrift] = []
    back: list[HostDrift] = []
    joined: list[str] = []
    left: list[str] = []
    for key, base, after_host in _merge(before, after):
        before_host = base.host if base is not None else None
        name = after_host.name if after_host is not None else before_host.name if before_host is not None else key
        # Findings and settings against the host's last read; reachability against the baseline.
        last = (base.last_read or base.host) if base is not None else None
        opened, closed, still = _finding_changes(name, last, after_host)
        new_failures += opened
        resolved += closed
        if before_host is None or last is None:
            joined.append(name)
            continue
        if after_host is None:
            left.append(name)
            continue
        if _is_read(before_host) and not _is_read(after_host):
            unreachable.append(HostDrift(host=name, reason=_reason(after_host)))
        elif not _is_read(before_host) and _is_read(after_host):
            back.append(HostDrift(host=name, reason=_reason(before_host)))
        changes = _setting_changes(last, after_host)
        settings += changes
        if changes:
            changed_failures += still

    def by_host(item: FindingDrift | SettingDrift | HostDrift) -> tuple[tuple[str, str], str]:
        return host_sort_key(item.host), getattr(item, "rule_id", getattr(item, "field", ""))

    return Drift(
        previous_scan_id=previous_scan_id,
        previous_started_at=previous_started_at,
        new_failures=sorted(new_failures, key=by_host),
        resolved_failures=sorted(resolved, key=by_host),
        changed_failures=sorted(changed_failures, key=by_host),
        changed_settings=sorted(
            settings, key=lambda s: (host_sort_key(s.host), SETTING_FIELDS.index(s.field))
        ),
        newly_unreachable=sorted(unreachable, key=by_host),
        reachable_again=sorted(back, key=by_host),
        joined=_sorted_names(joined),
        left=_sorted_names(left),
    )


def drift_counts(drift: Drift) -> dict[str, int]:
    """Return the number of entries per drift list, for summaries and history."""
    return {
        "new_failures": len(drift.new_failures),
        "resolved_failures": len(drift.resolved_failures),
        "changed_failures": len(drift.changed_failures),
        "changed_settings": len({s.host for s in drift.changed_settings}),
        "newly_unreachable": len(drift.newly_unreachable),
        "reachable_again": len(drift.reachable_again),
        "joined": len(drift.joined),
        "left": len(drift.left),
    }
