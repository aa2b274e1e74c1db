"""What the history commands share: the database the configuration names, terminal rendering."""

from __future__ import annotations

import argparse
import os
import sys
from io import StringIO
from pathlib import Path, PurePosixPath

from rich.console import Console, RenderableType

from scanner.cli.options import config_flags
from scanner.core.errors import UsageError
from scanner.core.logsetup import set_format
from scanner.core.wording import percent
from scanner.history.store import ScanRow, SqliteStore, StoreError
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


def pct(value: float | None) -> str:
    """Return a fraction as a percentage with one decimal (scanner/core/wording.py); n/a for None."""
    return percent(value)


_ALL_SCANS = 1_000_000  # every recorded scan, to know every inventory id the database holds


def inventory_ids(store: SqliteStore) -> set[str]:
    """Return every inventory id the database has scans of."""
    return {row.inventory_id for row in store.scans(limit=_ALL_SCANS)}


def shown_inventories(ids: set[str]) -> dict[str, str]:
    """Return how `history` shows each inventory id: a file's id as the shortest path tail that is unique."""
    # Ids of file inventories are path:<resolved path> (docs/config.md). Three nightly jobs each
    # with its own inventory.yaml differ only in their folders: show as much of the path as tells
    # them apart, and `--inventory-id` takes exactly that (scans_of_inventory).
    paths = {i: PurePosixPath(i.removeprefix("path:")).parts for i in ids if i.startswith("path:")}
    shown = {i: i for i in ids if i not in paths}
    for inventory_id, parts in paths.items():
        for k in range(1, len(parts) + 1):
            tail = parts[-k:]
            if k == len(parts) or not any(o != inventory_id and other[-k:] == tail for o, other in paths.items()):
                shown[inventory_id] = str(PurePosixPath(*tail))
                break
    return shown


def scans_of_inventory(store: SqliteStore, given: str, limit: int) -> list[ScanRow]:
    """Return the scans of the inventory `given` as `history` shows it, as a path, or as stored."""
    candidates = [given]
    if not given.startswith("path:"):
        candidates += [f"path:{given}", f"path:{Path(given).resolve()}"]
    for inventory_id in candidates:
        rows = store.scans(inventory_id=inventory_id, limit=limit)
        if rows:
            return rows
    tail = PurePosixPath(given).parts
    matches = sorted(
        i
        for i in inventory_ids(store)
        if i.startswith("path:") and tail and PurePosixPath(i.removeprefix("path:")).parts[-len(tail) :] == tail
    )
    if len(matches) > 1:
        raise UsageError(
            f"{given} names {len(matches)} inventories ({', '.join(m.removeprefix('path:') for m in matches)}); "
            "give more of the path"
        )
    return store.scans(inventory_id=matches[0], limit=limit) if matches else []


def compliance_of_row(row: ScanRow) -> float | None:
    """Return a scan's compliance, or None when no host was read (nothing to be compliant)."""
    # A host counts as read unless its status is error (reports/build.py is_covered).
    return row.compliance if row.hosts_total - row.by_status.get("error", 0) > 0 else None
