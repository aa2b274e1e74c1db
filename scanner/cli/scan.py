"""`natt-audit scan`: arguments -> effective configuration -> inputs -> the engine's scan."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from scanner.cli.options import (
    Subparsers,
    add_host_limits,
    add_tls_options,
    config_flags,
    config_option,
    duration,
    fraction,
    nonnegative_float,
    positive_float,
    positive_int,
)
from scanner.cli.output import use_color
from scanner.cli.worker import broker_options
from scanner.core.exitcodes import ExitCode
from scanner.core.formats import Format
from scanner.core.logsetup import set_format
from scanner.core.results import Severity
from scanner.engine.inputs import load_failing_inputs, load_inputs
from scanner.engine.scan import execute_scan
from scanner.inputs.config import load_config

log = logging.getLogger("natt_audit")


def register(subparsers: Subparsers) -> None:
    """Add `scan`; its options default to None so the config layering fills them (docs/config.md)."""
    parser = subparsers.add_parser("scan", help="scan an inventory and report")
    parser.add_argument("--config", metavar="FILE", help="TOML config file (default $NATT_AUDIT_CONFIG)")
    config_option(parser, "-i", "--inventory", key="inventory", help="inventory file: YAML, CSV, or text")
    config_option(
        parser,
        "-p",
        "--policy",
        key="policies",
        action="append",
        metavar="POLICY",
        help="built-in policy name (baseline, strict) or policy file; repeatable; default: baseline",
    )
    config_option(
        parser,
        "-f",
        "--format",
        key="format",
        choices=[f.value for f in Format],
        help="report format (default: console)",
    )
    config_option(
        parser, "-o", "--output", key="output", help="write the report to this file (atomically) instead of stdout"
    )
    add_host_limits(
        parser, host_timeout_help="hard wall-clock deadline per host in seconds, trickling peers included (default 30)"
    )
    config_option(
        parser,
        "--max-auth-failures",
        key="max_auth_failures",
        type=positive_int,
        metavar="N",
        help="stop the scan when N hosts reject the logon and none accepted it, so the account "
        "is not locked out (default 3)",
    )
    config_option(
        parser,
        "--deadline",
        key="timeouts.deadline",
        type=duration,
        metavar="DURATION",
        help="limit for the whole run (90s, 45m, 2h); hosts not reached get error timeout/deadline",
    )
    config_option(
        parser,
        "--grace",
        key="timeouts.grace",
        type=nonnegative_float,
        metavar="SECONDS",
        help="after SIGTERM/SIGINT or the deadline, how long in-flight hosts may finish (default 10)",
    )
    config_option(
        parser,
        "--fail-on",
        key="fail_on",
        choices=[s.value for s in Severity],
        help="lowest severity of a failing result that makes the exit status 1 (default low)",
    )
    config_option(
        parser,
        "--min-coverage",
        key="min_coverage",
        type=fraction,
        help="fraction of hosts that must be read, else exit 3 (default 1.0)",
    )
    config_option(
        parser,
        "--baseline-min-coverage",
        key="baseline_min_coverage",
        type=fraction,
        metavar="F",
        help="a scan below this coverage is recorded but never the baseline of drift (default 0.5)",
    )
    config_option(
        parser,
        "--waivers",
        key="waivers",
        action="append",
        metavar="FILE",
        help="waivers file: justified, expiring exceptions; repeatable",
    )
    config_option(
        parser,
        "--waiver-warn-days",
        key="waiver_warn_days",
        type=positive_int,
        help="list waivers that expire within this many days (default 14)",
    )
    config_option(
        parser, "--password-file", key="credentials.password_file", help="read the password from this file's first line"
    )
    config_option(
        parser,
        "--keytab",
        key="credentials.keytab",
        metavar="FILE",
        help="client keytab: Kerberos logs on with its key, once per scan (docs/authentication.md)",
    )
    config_option(
        parser,
        "--no-ntlm-fallback",
        key="ntlm_fallback",
        action="store_const",
        const=False,
        help="transport negotiate: never use NTLM, even for a host Kerberos cannot name or get a ticket for",
    )
    add_tls_options(parser)
    config_option(
        parser,
        "--legacy-port-fallback",
        key="legacy_port_fallback",
        action="store_const",
        const=True,
        help="when 5985/5986 refuses the connection, try WinRM 1.1's 80/443 (docs/wire.md)",
    )
    config_option(parser, "--color", key="color", choices=["auto", "always", "never"], help="console colours")
    config_option(
        parser,
        "--db",
        key="database",
        metavar="PATH",
        help="history database (default $XDG_STATE_HOME/natt-audit/history.db)",
    )
    config_option(
        parser,
        "--no-history",
        key="history",
        action="store_const",
        const=False,
        help="do not record this scan, compute no drift, take no lock",
    )
    config_option(
        parser,
        "--inventory-id",
        key="inventory_id",
        metavar="ID",
        help="stable id of the inventory for drift and resume (default: its resolved path)",
    )
    broker_options(parser)
    config_option(
        parser,
        "--site-timeout",
        key="timeouts.site",
        type=positive_float,
        metavar="SECONDS",
        help="with --broker: a site with no sign of a live worker this long ends as site/no_collector (default 120)",
    )
    config_option(
        parser, "--default-site", key="default_site", metavar="NAME", help="site of hosts the inventory gives none"
    )
    parser.add_argument(
        "--only-failing",
        metavar="REPORT.json",
        help="scan only the hosts that fail in this report (with -i: as the inventory lists them)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted scan of this database, skipping finished hosts",
    )
    config_option(
        parser,
        "--export",
        key="exports",
        action="append",
        metavar="DEST",
        help="after the scan, spool every finding and deliver it to DEST (a file, syslog+udp/tcp/tls://, "
        "hec+https://; docs/siem.md); undelivered findings stay spooled for `natt-audit ship` (exit 5); "
        "repeatable",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Layer the configuration, load and validate every input (exit 2 on any problem), then scan.

    With --only-failing REPORT.json the hosts are the report's failing ones (scanner/engine/scan.py,
    `load_failing_inputs`); a report without one scans nothing and exits 0.
    """
    config = load_config(path=args.config, environ=os.environ, flags=config_flags(args)).config
    set_format(config.log_format)  # the config file or the environment may choose json
    if args.only_failing is not None:
        failing = load_failing_inputs(config, os.environ, args.only_failing, stdin_isatty=sys.stdin.isatty())
        if failing is None:
            log.info("%s has no failing host: nothing to scan", args.only_failing)
            return int(ExitCode.OK)
        inputs = failing
    else:
        inputs = load_inputs(config, os.environ, stdin_isatty=sys.stdin.isatty())
    result = execute_scan(config, inputs, resume=args.resume, color=use_color(config.color), environ=os.environ)
    return result.code
