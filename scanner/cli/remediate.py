"""`natt-audit remediate`: write remediation plans for a JSON report's failing results (docs/remediation.md)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from reports.remediation.formats import PlanFormat, plan_files
from reports.remediation.json_plan import plan_json_schema
from reports.remediation.plan import RemediationPlan
from reports.remediation.planner import build_plan
from reports.remediation.source import ReportError, load_report
from rules.loader import resolve_policies
from rules.models import PolicyError
from scanner import __version__
from scanner.core.atomic import write_atomic
from scanner.core.exitcodes import ExitCode
from scanner.core.textsafe import one_line
from scanner.core.yamlfile import FileError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `remediate REPORT.json [-p POLICY]... -f FORMAT... -o DIR` and `remediate --schema`."""
    parser = subparsers.add_parser(
        "remediate",
        help="write remediation plans (ansible, gpo, powershell, reg, json) from a JSON report",
        description=run.__doc__,
    )
    parser.add_argument("report", nargs="?", metavar="REPORT.json", help="a report written by `scan -f json`")
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
        choices=[f.value for f in PlanFormat],
        default=None,
        help="plan format; repeatable; each goes to DIR/<format>/",
    )
    parser.add_argument("-o", "--output", metavar="DIR", help="folder for the plans (created if absent)")
    parser.add_argument(
        "--schema", action="store_true", help="print the JSON Schema of the json plan format and exit"
    )
    parser.set_defaults(func=run)


def _error(message: str) -> int:
    sys.stderr.write(f"natt-audit: error: {one_line(message, 1000)}\n")
    return int(ExitCode.USAGE)


def _stale(out: Path, files: dict[str, bytes], formats: list[PlanFormat]) -> list[str]:
    """Return files already in a format's folder that this plan would not rewrite (an older plan's)."""
    stale = []
    for fmt in formats:
        folder = out / fmt.value
        if folder.is_dir():
            names = (f"{fmt.value}/{entry.name}" for entry in sorted(folder.iterdir()))
            stale += [name for name in names if name not in files]
    return stale


def _summary(plan: RemediationPlan) -> str:
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
    if args.schema:
        sys.stdout.write(json.dumps(plan_json_schema(), indent=2, sort_keys=True) + "\n")
        return int(ExitCode.OK)
    given = (("REPORT.json", args.report), ("-f", args.format), ("-o", args.output))
    missing = [flag for flag, value in given if not value]
    if missing:
        return _error(f"remediate needs {', '.join(missing)} (or --schema)")
    try:
        loaded = load_report(args.report)
    except OSError as exc:
        return _error(f"cannot read {args.report}: {exc.strerror or exc}")
    except ReportError as exc:
        return _error(str(exc))
    specs = list(args.policy or loaded.scan.policies)
    try:
        policies = resolve_policies(specs)
    except (FileError, PolicyError) as exc:
        return _error(f"{exc} (give the policies with -p)")
    plan = build_plan(
        loaded.scan,
        loaded.hosts,
        policies,
        report_schema_version=loaded.schema_version,
        policy_specs=specs,
        tool_version=__version__,
    )
    formats = list(dict.fromkeys(PlanFormat(value) for value in args.format))
    files: dict[str, bytes] = {}
    for fmt in formats:
        files.update(plan_files(plan, fmt))
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        return _error(f"{args.output} exists and is not a folder")
    stale = _stale(out, files, formats)
    if stale:
        shown = ", ".join(stale[:5]) + (", ..." if len(stale) > 5 else "")
        return _error(f"{args.output} holds files this plan would not rewrite ({shown}): remove them or use another -o")
    try:
        for fmt in formats:
            (out / fmt.value).mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            write_atomic(out / name, data)
    except OSError as exc:
        return _error(f"cannot write {args.output}: {exc.strerror or exc}")
    counts = Counter(name.split("/", 1)[0] for name in files)
    written = ", ".join(f"{out / fmt.value} ({counts[fmt.value]} files)" for fmt in formats)
    sys.stderr.write(f"natt-audit: plan: {_summary(plan)}\nnatt-audit: wrote {one_line(written, 2000)}\n")
    return int(ExitCode.OK)
