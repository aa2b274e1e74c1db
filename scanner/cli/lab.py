"""`natt-audit lab serve|generate`: the simulator's own command (scanner/lab/cli.py), wired in."""

from __future__ import annotations

import argparse

from scanner.cli.options import Subparsers
from scanner.lab import cli as lab_cli


def register(subparsers: Subparsers) -> None:
    """Add `lab` with the simulator's own sub-commands."""
    lab_cli.register(subparsers)
    subparsers.choices["lab"].set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the simulator's sub-command (it reports its own problems: the lab is an island)."""
    return lab_cli.run(args)
