"""`natt-audit schema report|policy|waivers|remediation`: print a JSON Schema."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from reports.remediation.json_plan import plan_json_schema
from reports.schema import report_json_schema
from rules.loader import policy_json_schema
from rules.waivers import waivers_json_schema
from scanner.cli.options import Subparsers
from scanner.core.exitcodes import ExitCode

SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {
    "report": report_json_schema,
    "policy": policy_json_schema,
    "waivers": waivers_json_schema,
    "remediation": plan_json_schema,  # the json plan of `natt-audit remediate` (docs/remediation.md)
}


def register(subparsers: Subparsers) -> None:
    """Add `schema WHAT`."""
    parser = subparsers.add_parser("schema", help="print a JSON Schema")
    parser.add_argument("what", choices=list(SCHEMAS))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the chosen JSON Schema on stdout."""
    sys.stdout.write(json.dumps(SCHEMAS[args.what](), indent=2, sort_keys=True) + "\n")
    return ExitCode.OK
