"""`natt-audit worker`: serve one site's batches for distributed scans (docs/sites.md#workers)."""

from __future__ import annotations

import argparse
import os
import sys

from scanner.cli.options import Subparsers, config_flags, config_option, positive_float, positive_int
from scanner.core.errors import UsageError
from scanner.core.logsetup import set_format
from scanner.core.models import DEFAULT_CONCURRENCY, site_problem
from scanner.engine.inputs import scan_credentials
from scanner.engine.sites import require_celery
from scanner.engine.sites.broker import load_broker
from scanner.inputs.config import load_config

DEFAULT_VISIBILITY = 600.0  # scanner/engine/sites/app.py DEFAULT_VISIBILITY_TIMEOUT, without importing Celery


def broker_options(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """Add --broker, --broker-password-file and --broker-ca-bundle (the password never in argv)."""
    config_option(
        parser,
        "--broker",
        key="broker",
        metavar="URL",
        required=required,
        help="Redis broker redis://HOST:PORT/DB or rediss:// (TLS), without a password "
        "(NATT_AUDIT_BROKER_PASSWORD or --broker-password-file); with scan: distribute to site workers",
    )
    config_option(
        parser,
        "--broker-password-file",
        key="broker_password_file",
        metavar="FILE",
        help="read the broker password from this file's first line",
    )
    config_option(
        parser,
        "--broker-ca-bundle",
        key="broker_ca_bundle",
        metavar="FILE",
        help="PEM CA certificates for a rediss:// broker (default: the system store)",
    )


def register(subparsers: Subparsers) -> None:
    """Add `worker`."""
    parser = subparsers.add_parser("worker", help="serve one site's hosts for distributed scans (natt-audit[sites])")
    parser.add_argument("--config", metavar="FILE", help="TOML config file (default $NATT_AUDIT_CONFIG)")
    broker_options(parser)
    parser.add_argument("--site", required=True, metavar="NAME", help="the site whose queue this worker consumes")
    config_option(
        parser,
        "--concurrency",
        key="concurrency",
        type=positive_int,
        help=f"hosts in flight on this worker (default {DEFAULT_CONCURRENCY})",
    )
    config_option(
        parser,
        "--password-file",
        key="credentials.password_file",
        help="read this site's scan password from this file's first line",
    )
    config_option(
        parser,
        "--keytab",
        key="credentials.keytab",
        metavar="FILE",
        help="this site's client keytab: Kerberos logs on with its key, once per scan (docs/authentication.md)",
    )
    config_option(
        parser,
        "--max-auth-failures",
        key="max_auth_failures",
        type=positive_int,
        metavar="N",
        help="stop this site's scan when N hosts reject the logon and none accepted it (default 3; shared by the "
        "site's workers; a scan's own --max-auth-failures may lower it, never raise it)",
    )
    config_option(parser, "--ca-bundle", key="ca_bundle", help="PEM file of CA certificates for HTTPS hosts")
    config_option(
        parser,
        "--insecure-skip-tls-verify",
        key="insecure_skip_tls_verify",
        action="store_const",
        const=True,
        help="do NOT verify HTTPS certificates of this site's hosts (logged as a warning)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=positive_float,
        default=DEFAULT_VISIBILITY,
        metavar="SECONDS",
        help="a batch unacknowledged this long (its worker died) is handed out again; longer than a batch "
        f"takes (default {DEFAULT_VISIBILITY:g})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the broker, the site's account and settings (exit 2 on any problem), then serve."""
    why = site_problem(args.site)
    if why:
        raise UsageError(f"worker: --site {args.site!r} {why}")
    require_celery()
    config = load_config(path=args.config, environ=os.environ, flags=config_flags(args)).config
    set_format(config.log_format)
    if config.broker is None:
        raise UsageError("worker: no broker: give --broker URL, `broker` in the config file, or NATT_AUDIT_BROKER")
    broker = load_broker(
        config.broker,
        environ=os.environ,
        password_file=config.broker_password_file,
        ca_bundle=config.broker_ca_bundle,
    )
    # A password (file or environment) or a keytab wins; else a `kinit`/keytab-refreshed ticket cache.
    credentials = scan_credentials(config, os.environ, stdin_isatty=sys.stdin.isatty(), ticket_cache_allowed=True)
    # Celery is the optional extra: imported only once it is known to be installed.
    from scanner.engine.sites.worker import WorkerSettings, run_worker

    if config.insecure_skip_tls_verify:
        import logging

        logging.getLogger("natt_audit").warning(
            "TLS certificate verification is OFF for this site's hosts (--insecure-skip-tls-verify)"
        )
    settings = WorkerSettings(
        site=args.site,
        credentials=credentials,
        concurrency=config.concurrency,
        ca_bundle=config.ca_bundle,
        verify_tls=not config.insecure_skip_tls_verify,
        visibility_timeout=args.visibility_timeout,
        max_auth_failures=config.max_auth_failures,
    )
    return run_worker(broker, settings, verbose=bool(args.verbose))
