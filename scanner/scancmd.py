"""`natt-audit scan`: load and validate every input before the first packet, then scan."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from reports.formats import Format
from reports.model import ScanReport
from rules.loader import resolve_policies
from rules.results import Severity
from scanner.credentials import CredentialError, load_credentials
from scanner.exitcodes import ExitCode
from scanner.inventory import InventoryError, load_inventory
from scanner.models import CollectOptions
from scanner.run import ScanRequest, run_scan, write_report
from scanner.yamlfile import FileError

log = logging.getLogger("natt_audit")


def summary_line(report: ScanReport, code: ExitCode) -> str:
    """Return the one-line summary printed on stderr after every scan."""
    s = report.summary
    by = s.hosts_by_status
    parts = ", ".join(f"{by.get(k, 0)} {k}" for k in ("pass", "fail", "waived", "error", "not_applicable"))
    flag = " (interrupted)" if report.scan.interrupted else ""
    return (
        f"natt-audit: scanned {s.hosts_total} hosts{flag}: {parts}; coverage {s.coverage:.1%}; "
        f"exit {int(code)} ({code.name.lower()})"
    )


def run_scan_command(args: argparse.Namespace) -> int:
    """Validate inputs (exit 2 on any problem), scan, write the report, return the exit code."""
    try:
        policies = resolve_policies(args.policy)
        inventory = load_inventory(args.inventory)
        credentials = load_credentials(
            password_file=args.password_file, environ=os.environ, stdin_isatty=sys.stdin.isatty()
        )
    except (FileError, InventoryError, CredentialError) as exc:
        sys.stderr.write(f"natt-audit: error: {exc}\n")
        return ExitCode.USAGE
    for warning in inventory.warnings:
        log.warning("%s", warning)
    if args.insecure_skip_tls_verify:
        log.warning(
            "TLS certificate verification is OFF (--insecure-skip-tls-verify): results can be spoofed"
        )
    options = CollectOptions(
        host_timeout=args.host_timeout,
        connect_timeout=min(args.connect_timeout, args.host_timeout),
        ca_bundle=args.ca_bundle,
        verify_tls=not args.insecure_skip_tls_verify,
    )
    request = ScanRequest(
        inventory=inventory,
        policies=policies,
        credentials=credentials,
        options=options,
        concurrency=args.concurrency,
        fail_on=Severity(args.fail_on),
        min_coverage=args.min_coverage,
    )
    outcome = run_scan(request)
    color = args.color == "always" or (
        args.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    )
    try:
        write_report(outcome.report, Format(args.format), args.output, color=color)
    except OSError as exc:
        sys.stderr.write(
            f"natt-audit: error: cannot write the report to {args.output}: {exc.strerror or exc}\n"
        )
        return ExitCode.USAGE
    sys.stderr.write(summary_line(outcome.report, outcome.code) + "\n")
    return outcome.code
