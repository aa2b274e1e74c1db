"""`natt-audit remediate REPORT.json -f FORMAT... -o DIR`: plans for a report's failures (docs/remediation.md)."""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

from reports.remediation.formats import PlanFormat, plan_files
from reports.remediation.plan import RemediationPlan
from reports.remediation.planner import build_plan
from reports.remediation.source import load_report
from rules.loader import resolve_policies
from rules.models import PolicyError
from scanner import __version__
from scanner.cli.options import Subparsers
from scanner.core.atomic import write_atomic
from scanner.core.errors import OutputError, UsageError
from scanner.core.exitcodes import ExitCode
from scanner.core.yamlfile import FileError

log = logging.getLogger("natt_audit")


def register(subparsers: Subparsers) -> None:
    """Add `remediate REPORT.json [-p POLICY]... -f FORMAT... -o DIR`."""
    parser = subparsers.add_parser(
        "remediate",
        help="write remediation plans (ansible, gpo, powershell, reg, json) from a JSON report",
        description=run.__doc__,
    )
    parser.add_argument("report", metavar="REPORT.json", help="a report written by `scan -f json`")
    parser.add_argument(
        "-p",
        "--policy",
        action="append",
        default=None,
        metavar="POLICY",
        help="policy whose fixes to use (built-in name or file); repeatable; default: the report's policies",
    )
    parser.add_argument(
        "-f",
        "--format",
        action="append",
        required=True,
        choices=[f.value for f in PlanFormat],
        help="plan format; repeatable; each goes to DIR/<format>/ (the json plan's schema: `schema remediation`)",
    )
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the plans (created if absent)")
    parser.set_defaults(func=run)


def _stale(out: Path, files: dict[str, bytes], formats: list[PlanFormat]) -> list[str]:
    """Return files already in a format's folder that this plan would not rewrite (an older plan's)."""
    stale = []
    for fmt in formats:
        folder = out / fmt.value
        if folder.is_dir():
            names = (f"{fmt.value}/{entry.name}" for entry in sorted(folder.iterdir()))
            stale += [name for name in names if name not in files]
    return stale


def summary(plan: RemediationPlan) -> str:
    """Return the one-line count of a plan: hosts and actions, and hosts left out by reason."""
    actions = Counter(action.action for host in plan.hosts for action in host.actions)
    left = Counter(skipped.reason.value for skipped in plan.skipped)
    changes = (
        f"{len(plan.hosts)} hosts to change ({actions['set_value']} sets, {actions['delete_value']} deletes, "
        f"{actions['restart_service']} restarts)"
    )
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(left.items())) or "none"
    return f"{changes}; left out: {reasons}"


def run(args: argparse.Namespace) -> int:
    """Write a plan for every failing result that has a fix; hosts not read, waived or unfixable are left out."""
    report = load_report(args.report)
    specs = list(args.policy or report.header.scan.policies)
    try:
        policies = resolve_policies(specs)
    except (FileError, PolicyError) as exc:
        raise UsageError(f"{exc} (give the policies with -p)") from None
    plan = build_plan(
        report.header.scan,
        report.hosts,
        policies,
        report_schema_version=report.header.schema_version,
        policy_specs=specs,
        tool_version=__version__,
    )
    formats = list(dict.fromkeys(PlanFormat(value) for value in args.format))
    files: dict[str, bytes] = {}
    for fmt in formats:
        files.update(plan_files(plan, fmt))
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{args.output} exists and is not a folder")
    stale = _stale(out, files, formats)
    if stale:
        shown = ", ".join(stale[:5]) + (", ..." if len(stale) > 5 else "")
        raise OutputError(
            f"{args.output} holds files this plan would not rewrite ({shown}): remove them or use another -o"
        )
    try:
        for fmt in formats:
            (out / fmt.value).mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            write_atomic(out / name, data)
    except OSError as exc:
        raise OutputError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    counts = Counter(name.split("/", 1)[0] for name in files)
    log.info("plan: %s", summary(plan))
    log.info("wrote %s", ", ".join(f"{out / fmt.value} ({counts[fmt.value]} files)" for fmt in formats))
    return int(ExitCode.OK)
