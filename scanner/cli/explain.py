"""`natt-audit policy explain`: show how each result of one host in a report was derived."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from reports.model import HostReport, PolicyRef
from rules.compile import compile_policies
from rules.explain import NodeTrace, RuleTrace, explain
from rules.loader import Policy, builtin_policy, load_policy, resolve_policies
from scanner.cli.export import load_report
from scanner.core.errors import UsageError
from scanner.core.exitcodes import ExitCode
from scanner.core.models import Observation, Target
from scanner.core.sanitize import one_line

log = logging.getLogger("natt_audit.explain")


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


def _policies_as_scanned(refs: Sequence[PolicyRef], report_path: str) -> list[Policy]:
    """Load the policies the report names, by name or absolute path; refuse a file that changed."""
    policies = []
    for ref in refs:
        if ref.source.startswith("builtin:"):
            policy = builtin_policy(ref.source.removeprefix("builtin:"))
            if ref.sha256 and policy.sha256 != ref.sha256:
                log.warning(
                    "the built-in policy %r differs from the one the scan used (another natt-audit version?)",
                    policy.name,
                )
            policies.append(policy)
            continue
        how = f"give the policy file as it was at scan time with -p FILE (report {report_path})"
        if not Path(ref.source).is_file():
            raise UsageError(f"policy {ref.name!r} was read from {ref.source}, which no longer exists; {how}")
        policy = load_policy(ref.source)
        if policy.sha256 != ref.sha256:
            raise UsageError(f"policy file {ref.source} changed since the scan (its SHA-256 differs); {how}")
        policies.append(policy)
    compile_policies(policies)
    return policies


def run_explain(report_path: str, host_name: str, policy_specs: Sequence[str], out: TextIO) -> int:
    """Print how each result of `host_name` in the report was derived; a NattError on bad input."""
    report = load_report(report_path)  # bounded, regular files only (scanner/core/bounded.py)
    matches = [h for h in report.hosts if h.name == host_name] or [
        h for h in report.hosts if h.name.lower() == host_name.lower()
    ]
    if not matches:
        raise UsageError(f"no host named {one_line(host_name)!r} in {report_path}")
    host = matches[0]
    scan = report.header.scan
    specs = list(policy_specs) or list(scan.policies)
    if policy_specs or not scan.policy_refs:
        policies = resolve_policies(specs)  # -p FILE, or a report older than policy_refs
    else:
        policies = _policies_as_scanned(scan.policy_refs, report_path)
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
