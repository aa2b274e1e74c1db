"""`natt-audit workers`: the live workers of a broker, by site (docs/sites.md#workers)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from scanner.cli.options import Subparsers, config_flags, positive_float
from scanner.cli.worker import broker_options
from scanner.core.errors import UsageError
from scanner.core.sanitize import one_line
from scanner.engine.sites import require_celery
from scanner.engine.sites.broker import load_broker
from scanner.inputs.config import load_config


def register(subparsers: Subparsers) -> None:
    """Add `workers`."""
    parser = subparsers.add_parser("workers", help="list the live site workers of a broker (natt-audit[sites])")
    parser.add_argument("--config", metavar="FILE", help="TOML config file (default $NATT_AUDIT_CONFIG)")
    broker_options(parser)
    parser.add_argument("-f", "--format", choices=["text", "json"], default="text", help="output format")
    parser.add_argument(
        "--timeout", type=positive_float, default=2.0, metavar="SECONDS", help="how long to wait for answers"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Ask every worker which site it serves; print them by site. Exit 3 when none answers."""
    require_celery()
    config = load_config(path=args.config, environ=os.environ, flags=config_flags(args)).config
    if config.broker is None:
        raise UsageError("workers: no broker: give --broker URL, `broker` in the config file, or NATT_AUDIT_BROKER")
    broker = load_broker(
        config.broker, environ=os.environ, password_file=config.broker_password_file, ca_bundle=config.broker_ca_bundle
    )
    from scanner.engine.sites.app import check_broker, live_workers, make_app, result_reader

    app = make_app(broker, results=False)
    check_broker(result_reader(app, broker), broker)
    sites = live_workers(app, timeout=args.timeout)
    if args.format == "json":
        sys.stdout.write(json.dumps({"sites": sites}, indent=2, sort_keys=True) + "\n")
    else:
        if not sites:
            sys.stdout.write("no live workers\n")
        for site, workers in sites.items():
            # Worker names come from the broker: made inert for the terminal.
            sys.stdout.write(f"{one_line(site)}: {len(workers)} worker(s): {', '.join(one_line(w) for w in workers)}\n")
    sys.stdout.flush()
    return 0 if sites else 3
