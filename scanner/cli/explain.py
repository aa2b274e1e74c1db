"""`natt-audit policy explain`: show how each result of one host in a report was derived."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO

from reports.model import HostReport
from rules.explain import NodeTrace, RuleTrace, explain
from rules.loader import resolve_policies
from scanner.cli.export import load_report
from scanner.core.errors import UsageError
from scanner.core.exitcodes import ExitCode
from scanner.core.models import Observation, Target
from scanner.core.sanitize import one_line


def _show(value: Any) -> str:
    return one_line(json.dumps(value, ensure_ascii=False, sort_keys=True), limit=200)


def _node_lines(node: NodeTrace, depth: int) -> list[str]:
    pad = "    " * depth
    verdict = {True: "true", False: "false", None: "unknown"}[node.result]
    if node.kind == "compare":
        head = f"{pad}{node.fact} {node.operator} {_show(node.operand)}: saw {_show(node.value)} -> {verdict}"
        return [head]
    lines = [f"{pad}{node.kind}: -> {verdict}"]
    for child in node.children:
        lines.extend(_node_lines(child, depth + 1))
    return lines


def _trace_lines(trace: RuleTrace, reported: dict[str, Any] | None) -> list[str]:
    result = trace.result
    lines = [
        f"{trace.rule_id} ({trace.severity.value}, policy {one_line(trace.policy)}): {result.status.value}"
    ]
    terms = ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in trace.scope.terms.items()) or "every host"
    lines.append(f"  scope: {'in scope' if trace.scope.in_scope else 'out of scope'} ({terms})")
    if trace.overridden_by:
        lines.append(f"  superseded by {trace.overridden_by} (overrides)")
    if trace.facts:
        lines.append("  facts read: " + ", ".join(f"{k}={_show(v)}" for k, v in sorted(trace.facts.items())))
    if trace.check is not None:
        lines.append("  check:")
        lines.extend(_node_lines(trace.check, 1))
    lines.append(f"  message: {one_line(result.message)}")
    if reported is not None:
        waiver = reported.get("waiver")
        if waiver:
            lines.append(
                f"  waiver: {one_line(str(waiver.get('label')))} {waiver.get('state')} "
                f"(expires {waiver.get('expires')}, {one_line(str(waiver.get('source')))}): "
                f"{one_line(str(waiver.get('justification')), limit=200)}"
            )
        if reported.get("status") != result.status.value and not waiver:
            lines.append(
                f"  NOTE: the report says {reported.get('status')}; the policy as loaded now says "
                f"{result.status.value} (the policy changed since the scan?)"
            )
        elif waiver and waiver.get("state") == "applied":
            lines.append(
                f"  reported status: {reported.get('status')} (the waiver turned the failure into waived)"
            )
    return lines


def observation_of(host: HostReport) -> Observation:
    """Rebuild the observation facts a report keeps for one host (tags, OS, error)."""
    target = Target(name=host.name, address=host.address, port=host.port, tags=host.tags)
    return Observation(target=target, requests=host.requests, os=host.os, error=host.error)


def run_explain(report_path: str, host_name: str, policy_specs: Sequence[str], out: TextIO) -> int:
    """Print how each result of `host_name` in the report was derived; a NattError on bad input."""
    report = load_report(report_path)  # bounded, regular files only (scanner/core/bounded.py)
    matches = [h for h in report.hosts if h.name == host_name] or [
        h for h in report.hosts if h.name.lower() == host_name.lower()
    ]
    if not matches:
        raise UsageError(f"no host named {one_line(host_name)!r} in {report_path}")
    host = matches[0]
    specs = list(policy_specs) or list(report.header.scan.policies)
    policies = resolve_policies(specs)
    traces = explain(observation_of(host), policies, setting=host.setting)
    reported = {r.rule_id: r.model_dump(mode="json") for r in host.results}
    lines = [f"host {one_line(host.name)} ({one_line(host.address)}:{host.port}): status {host.status.value}"]
    if host.error is not None:
        lines.append(
            f"  not read: {host.error.stage.value}/{one_line(host.error.reason)}: {one_line(host.error.message)}"
        )
    if host.setting is not None:
        s = host.setting
        lines.append(
            f"  setting: os_family={s.os_family.value} key={one_line(str(s.applicable_key))} present={s.present} "
            f"raw_type={s.raw_type} raw_value={_show(s.raw_value)} effective_mode={s.effective_mode} "
            f"integrity={s.integrity.value} stray={len(s.stray)}"
        )
    lines.append(f"  policies: {', '.join(one_line(p) for p in specs)}")
    for trace in traces:
        lines.append("")
        lines.extend(_trace_lines(trace, reported.get(trace.rule_id)))
    out.write("\n".join(lines) + "\n")
    return ExitCode.OK
