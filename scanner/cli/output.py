"""What the history commands share: the database the configuration names, terminal rendering."""

from __future__ import annotations

import argparse
import os
import sys
from io import StringIO
from pathlib import Path

from rich.console import Console, RenderableType

from scanner.cli.options import config_flags
from scanner.core.logsetup import set_format
from scanner.history.store import SqliteStore, StoreError
from scanner.inputs.config import database_path, load_config

WIDTH = 120


def _console(color: bool = False) -> tuple[Console, StringIO]:
    buffer = StringIO()
    console = Console(
        file=buffer,
        width=WIDTH,
        color_system="standard" if color else None,
        force_terminal=color,
        no_color=not color,
        markup=False,
        emoji=False,
        highlight=False,
        _environ={},
    )
    return console, buffer


def print_renderable(renderable: RenderableType) -> None:
    """Render to stdout at a fixed width, without colour, trailing spaces stripped."""
    console, buffer = _console()
    console.print(renderable)
    sys.stdout.write("\n".join(line.rstrip() for line in buffer.getvalue().split("\n")))
    sys.stdout.flush()


def open_history(args: argparse.Namespace) -> SqliteStore:
    """Open the history database named by --db, the config file or the default; StoreError if absent."""
    loaded = load_config(path=args.config, environ=os.environ, flags=config_flags(args))
    set_format(loaded.config.log_format)  # the config file or the environment may choose json
    path = database_path(loaded.config)
    if not Path(path).exists():
        raise StoreError(f"no history database at {path}; run `natt-audit scan` first (or give --db)")
    return SqliteStore(path)


def use_color(choice: str) -> bool:
    """Return whether to colour stdout: `always`, `never`, or `auto` (a terminal, and no NO_COLOR)."""
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return sys.stdout.isatty()


def pct(value: float) -> str:
    """Return a fraction as a percentage with one decimal."""
    return f"{value * 100:.1f}%"
