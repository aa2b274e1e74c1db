"""The README, docs/config.md and `--help` say what the commands do."""

from __future__ import annotations

import argparse
import re

from scanner.cli.main import build_parser
from scanner.core.formats import Format
from tests.support.cliproc import REPO, run_cli

README = (REPO / "README.md").read_text(encoding="utf-8")
CONFIG_MD = (REPO / "docs" / "config.md").read_text(encoding="utf-8")


def scan_options() -> set[str]:
    """Return the long options of `natt-audit scan`."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    scan = subparsers.choices["scan"]
    return {o for action in scan._actions for o in action.option_strings if o.startswith("--") and o != "--help"}


def test_the_readme_option_table_lists_every_scan_option() -> None:
    table = README[README.index("## Scanning your estate") : README.index("### History, drift")]
    rows = "\n".join(line for line in table.splitlines() if line.startswith("| `"))
    missing = {option for option in scan_options() if f"`{option}" not in rows and f", {option}" not in rows}
    assert missing == set()


def test_the_config_format_row_lists_every_format() -> None:
    row = next(line for line in CONFIG_MD.splitlines() if line.startswith("| `format` |"))
    assert re.findall(r"`(\w+)`", row.split("|")[2]) == [*(f.value for f in Format), "console"]  # + default


def test_scan_export_help_says_scan_delivers() -> None:
    done = run_cli("scan", "--help")
    text = " ".join(done.stdout.split())
    assert "after the scan, spool every finding and deliver it to DEST" in text
    assert "carried in the configuration" not in text + CONFIG_MD
