"""`natt-audit remediate REPORT.json`: plans for a report's failures, a dry run, or `--apply` (docs/remediation.md)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from reports.hosts import Report
from reports.remediation.formats import PlanFormat, plan_files
from reports.remediation.plan import DeleteValue, HostPlan, Observed, RemediationPlan, SetValue
from reports.remediation.planner import build_plan
from reports.remediation.source import ReportError, load_report
from rules.loader import Policy, resolve_policies
from rules.models import PolicyError
from scanner import __version__
from scanner.cli.options import (
    Subparsers,
    add_host_limits,
    add_tls_options,
    config_flags,
    config_option,
    duration,
)
from scanner.collect.remediate import Outcome
from scanner.core.atomic import write_atomic
from scanner.core.errors import OutputError, UsageError
from scanner.core.exitcodes import ExitCode
from scanner.core.logsetup import fields, set_format
from scanner.core.models import RegistryValue
from scanner.core.sanitize import one_line
from scanner.core.yamlfile import FileError
from scanner.engine.apply import ApplyRequest, Planned, log_path_problem, run_apply
from scanner.engine.inputs import collect_options, scan_credentials
from scanner.engine.targets import Recorded, rebuild_targets
from scanner.history.applylog import ApplyRun, Verdict
from scanner.inputs.config import database_path, format_duration, load_config
from scanner.inputs.inventory import load_inventory

log = logging.getLogger("natt_audit")

DEFAULT_MAX_REPORT_AGE = 24 * 3600.0  # seconds: a day-old audit is the oldest a change may rest on
CONFIRM_WORD = "yes"


def register(subparsers: Subparsers) -> None:
    """Add `remediate REPORT.json [-f FORMAT... -o DIR] [--apply ...]`."""
    parser = subparsers.add_parser(
        "remediate",
        help="remediation plans (ansible, gpo, powershell, reg, json) from a JSON report; a dry run; or --apply",
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
        default=None,
        choices=[f.value for f in PlanFormat],
        help="plan format; repeatable; each goes to DIR/<format>/ (the json plan's schema: `schema remediation`)",
    )
    parser.add_argument("-o", "--output", metavar="DIR", help="folder for the plans (created if absent); with -f")
    apply = parser.add_argument_group("applying (docs/remediation.md#applying)")
    apply.add_argument("--apply", action="store_true", help="change the hosts; without it nothing is changed")
    apply.add_argument("--yes", action="store_true", help="do not ask for confirmation (needed without a terminal)")
    apply.add_argument(
        "--max-report-age",
        type=duration,
        default=DEFAULT_MAX_REPORT_AGE,
        metavar="DURATION",
        help="refuse a report that finished longer ago than this (90m, 24h, 2h30m; default 24h)",
    )
    apply.add_argument(
        "--no-verify", action="store_true", help="skip the verification scan of the hosts after the changes"
    )
    apply.add_argument("--log", metavar="FILE", help="also write the action log (JSON) here, atomically")
    apply.add_argument(
        "-i",
        "--inventory",
        metavar="FILE",
        help="reach the hosts as this inventory says (scheme, transport); default: the report's address and port",
    )
    apply.add_argument("--config", metavar="FILE", help="TOML config file (default $NATT_AUDIT_CONFIG)")
    config_option(
        parser, "--password-file", key="credentials.password_file", help="read the password from this file's first line"
    )
    add_host_limits(
        parser,
        host_timeout_help="hard wall-clock deadline per host in seconds, the service restart included (default 30)",
    )
    add_tls_options(parser)
    config_option(
        parser, "--db", key="database", metavar="PATH", help="history database the apply is recorded in (default: XDG)"
    )
    config_option(
        parser,
        "--no-history",
        key="history",
        action="store_const",
        const=False,
        help="do not record the apply in the history database (and take no lock)",
    )
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


def _write_plans(plan: RemediationPlan, formats: list[PlanFormat], output: str) -> None:
    """Write each format's files under `output`/<format>/, atomically; refuse to mix two plans in a folder."""
    files: dict[str, bytes] = {}
    for fmt in formats:
        files.update(plan_files(plan, fmt))
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{output} exists and is not a folder")
    stale = _stale(out, files, formats)
    if stale:
        shown = ", ".join(stale[:5]) + (", ..." if len(stale) > 5 else "")
        raise OutputError(f"{output} holds files this plan would not rewrite ({shown}): remove them or use another -o")
    try:
        for fmt in formats:
            (out / fmt.value).mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            write_atomic(out / name, data)
    except OSError as exc:
        raise OutputError(f"cannot write {output}: {exc.strerror or exc}") from None
    counts = Counter(name.split("/", 1)[0] for name in files)
    log.info("wrote %s", ", ".join(f"{out / fmt.value} ({counts[fmt.value]} files)" for fmt in formats))


# ---- what a plan does, for people -------------------------------------------------------------


def _value(value: Observed | RegistryValue | str | None) -> str:
    if value is None:
        return "absent"
    if isinstance(value, str):
        return one_line(value, 80)
    if value.type == "REG_DWORD":
        return f"REG_DWORD {value.data}"
    return one_line(f"{value.type} {value.data!r}", 120)


def _action_lines(host: HostPlan) -> Iterable[str]:
    for action in host.actions:
        if isinstance(action, SetValue):
            where = f"HKLM\\{action.key.value}\\{action.name}"
            yield f"    set      {where}: {_value(action.before)} -> REG_DWORD {action.after.data}"
        elif isinstance(action, DeleteValue):
            yield f"    delete   HKLM\\{action.key.value}\\{action.name}: {_value(action.before)} -> absent"
        else:
            yield f"    restart  service {action.service} (stop, wait for Stopped, start, wait for Running)"


def plan_lines(plan: RemediationPlan) -> list[str]:
    """Return what applying the plan would do, host by host, and what it leaves out."""
    lines = []
    for host in plan.hosts:
        lines.append(f"{one_line(host.name)} ({one_line(host.address)}:{host.port}, {host.os_family.value}):")
        lines.extend(_action_lines(host))
    for skipped in plan.skipped:
        lines.append(f"left out: {one_line(skipped.name)}: {skipped.reason.value}: {one_line(skipped.detail)}")
    return lines


def _age(report: Report, now: datetime) -> float:
    """Return how many seconds ago the report's scan finished; ReportError when its time is unusable."""
    text = report.header.scan.finished_at
    try:
        finished = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(f"the report's finished_at {one_line(text, 40)!r} is not a time") from None
    if finished.tzinfo is None:
        finished = finished.replace(tzinfo=UTC)
    return (now - finished).total_seconds()


def check_age(report: Report, path: str, max_age: float, now: datetime | None = None) -> None:
    """Refuse (exit 2) a report that finished longer ago than `max_age`, or in the future."""
    age = _age(report, now or datetime.now(UTC))
    finished = report.header.scan.finished_at
    if age < -300:  # a clock five minutes ahead is skew; more is a report not to be trusted
        raise ReportError(f"{path} finished at {finished}, in the future: check the clocks, then rescan")
    if age > max_age:
        raise ReportError(
            f"{path} finished at {finished}, {format_duration(round(age))} ago, longer than --max-report-age "
            f"{format_duration(max_age)}: the hosts may have changed since; scan again and plan from the new report"
        )


# ---- applying ---------------------------------------------------------------------------------


def _planned(plan: RemediationPlan, report_path: str, inventory: str | None) -> list[Planned]:
    loaded = load_inventory(inventory) if inventory is not None else None
    recorded = [Recorded(h.name, h.address, h.port) for h in plan.hosts]
    rebuilt = rebuild_targets(recorded, source=report_path, inventory=loaded, same_address=True)
    for warning in rebuilt.warnings:
        log.warning("%s", warning)
    by_name = {t.name.lower(): t for t in rebuilt.targets}
    return [Planned(h, by_name[h.name.lower()]) for h in plan.hosts if h.name.lower() in by_name]


def _confirm(hosts: list[Planned], plan: RemediationPlan, args: argparse.Namespace) -> None:
    """Ask on the terminal unless --yes; without a terminal and --yes, refuse (exit 2)."""
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            f"--apply would change {len(hosts)} hosts and there is no terminal to confirm on: "
            "review the dry run (`remediate REPORT.json` without --apply), then give --yes"
        )
    chosen = plan.model_copy(update={"hosts": [h.plan for h in hosts], "skipped": []})
    sys.stderr.write("\n".join(plan_lines(chosen)) + "\n")
    sys.stderr.write(f"Apply these changes to {len(hosts)} hosts? Type '{CONFIRM_WORD}' to go on: ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer != CONFIRM_WORD:
        raise UsageError("not confirmed: nothing was changed")


def result_lines(run: ApplyRun) -> list[str]:
    """Return each planned host's verdict and steps, for stdout."""
    lines = []
    for host in run.hosts:
        lines.append(
            f"{one_line(host.name)} ({one_line(host.address)}:{host.port}): {host.verdict.value}: "
            f"{one_line(host.detail)}"
        )
        for action in host.actions:
            state = action.result.value + (f" ({action.reason})" if action.reason else "")
            lines.append(
                f"    {action.action.value:<16} {one_line(action.what)}: {state}: "
                f"{_value(action.before)} -> {_value(action.after)}"
                + (f"; {one_line(action.message)}" if action.result is not Outcome.DONE and action.message else "")
            )
    return lines


def apply_summary(run: ApplyRun, code: ExitCode) -> str:
    """Return the one-line summary of an apply: verdicts, steps done, exit code."""
    verdicts = Counter(h.verdict for h in run.hosts)
    steps = Counter(a.result for h in run.hosts for a in h.actions)
    checked = "verified by a rescan" if run.verified else "not verified (--no-verify)"
    return (
        f"applied to {len(run.hosts)} hosts, {checked}: {verdicts[Verdict.PASS]} pass, {verdicts[Verdict.FAIL]} fail, "
        f"{verdicts[Verdict.UNVERIFIED]} unverified; steps: {steps[Outcome.DONE]} done, "
        f"{steps[Outcome.UNCHANGED]} unchanged, {steps[Outcome.FAILED]} failed, {steps[Outcome.SKIPPED]} skipped; "
        f"exit {int(code)} ({code.name.lower()})"
    )


def _apply(args: argparse.Namespace, report: Report, plan: RemediationPlan, policies: list[Policy]) -> int:
    config = load_config(path=args.config, environ=os.environ, flags=config_flags(args)).config
    set_format(config.log_format)
    check_age(report, args.report, args.max_report_age)
    if args.log is not None and (problem := log_path_problem(args.log)) is not None:
        raise OutputError(f"--log: {problem}")
    hosts = _planned(plan, args.report, args.inventory)
    log.info("plan: %s", summary(plan))
    if not hosts:
        log.info("nothing to apply")
        return int(ExitCode.OK)
    _confirm(hosts, plan, args)
    if config.insecure_skip_tls_verify:
        log.warning("TLS certificate verification is OFF (--insecure-skip-tls-verify)")
    credentials = scan_credentials(config, os.environ, stdin_isatty=sys.stdin.isatty())
    request = ApplyRequest(
        plan=plan,
        hosts=hosts,
        report=args.report,
        policies=policies,
        credentials=credentials,
        options=collect_options(config),
        concurrency=config.concurrency,
        verify=not args.no_verify,
    )
    db = database_path(config, os.environ) if config.history else None
    outcome = run_apply(request, db=db, log_file=args.log)
    sys.stdout.write("\n".join(result_lines(outcome.run)) + "\n")
    sys.stdout.flush()
    log.info(
        "%s",
        apply_summary(outcome.run, outcome.code),
        extra=fields(apply_id=outcome.run.id, exit_code=int(outcome.code), recorded=outcome.recorded),
    )
    return int(outcome.code)


def run(args: argparse.Namespace) -> int:
    """Plan the fixes for a report's failures: write the plans (-f/-o), show them (a dry run), or --apply them."""
    if bool(args.format) != bool(args.output):
        raise UsageError("remediate: -f/--format and -o/--output go together (plans are written to DIR/<format>/)")
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
    if args.format:
        log.info("plan: %s", summary(plan))
        _write_plans(plan, list(dict.fromkeys(PlanFormat(value) for value in args.format)), args.output)
    if args.apply:
        return _apply(args, report, plan, policies)
    if not args.format:
        # The dry run: what --apply would do, and nothing else; no host is contacted.
        sys.stdout.write("\n".join([*plan_lines(plan), f"dry run: {summary(plan)}; nothing was changed"]) + "\n")
        try:
            check_age(report, args.report, args.max_report_age)
        except ReportError as exc:
            log.warning("--apply would refuse this report: %s", exc)
    return int(ExitCode.OK)
