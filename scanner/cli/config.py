"""`natt-audit config show`: the effective configuration, secrets redacted, each value's source."""

from __future__ import annotations

import argparse
import os
import sys

from scanner.cli.options import Subparsers, config_flags, config_option
from scanner.core.exitcodes import ExitCode
from scanner.inputs.config import load_config, show_config


def register(subparsers: Subparsers) -> None:
    """Add `config show`."""
    parser = subparsers.add_parser("config", help="show the effective configuration")
    actions = parser.add_subparsers(dest="config_command", required=True)
    show = actions.add_parser("show", help="print the effective configuration, secrets redacted")
    show.add_argument("--config", metavar="FILE", help="TOML config file (default $NATT_AUDIT_CONFIG)")
    config_option(show, "--db", key="database", metavar="PATH", help="history database, as `scan --db` would take it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the effective configuration as TOML."""
    loaded = load_config(path=args.config, environ=os.environ, flags=config_flags(args))
    sys.stdout.write(show_config(loaded, os.environ))
    return ExitCode.OK
