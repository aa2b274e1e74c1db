"""`natt-audit inventory show`: the targets an inventory resolves to, without contacting any host."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from scanner.cli.options import Subparsers, config_flags, config_option
from scanner.cli.output import print_renderable
from scanner.core.exitcodes import ExitCode
from scanner.core.sanitize import console_text, json_text
from scanner.inputs.config import ConfigError, load_config
from scanner.inputs.inventory import SourceSummary
from scanner.inputs.sources import CAPTION_TAG
from scanner.inputs.sources.compose import ResolvedHost, ResolvedInventory, resolve_inventory

log = logging.getLogger("natt_audit")

TAGS_SHOWN = 120  # characters of tags per row in the table; -f json has them all


def register(subparsers: Subparsers) -> None:
    """Add `inventory show`."""
    parser = subparsers.add_parser("inventory", help="show the targets an inventory resolves to")
    actions = parser.add_subparsers(dest="inventory_command", required=True)
    show = actions.add_parser(
        "show", help="print the resolved targets and where each came from; no host is contacted"
    )
    show.add_argument("--config", metavar="FILE", help="TOML config file (default $NATT_AUDIT_CONFIG)")
    config_option(
        show, "-i", "--inventory", key="inventory", help="inventory file: YAML (with sources:), CSV, or text"
    )
    show.add_argument("-f", "--format", choices=["table", "json"], default="table", help="output (default table)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the inventory as `scan` would (exit 2 on any problem) and print its targets."""
    config = load_config(path=args.config, environ=os.environ, flags=config_flags(args)).config
    if config.inventory is None:
        raise ConfigError("no inventory: give -i/--inventory, `inventory` in the config file, or NATT_AUDIT_INVENTORY")
    resolved = resolve_inventory(config.inventory, environ=os.environ)
    for warning in resolved.warnings:
        log.warning("%s", warning)
    if args.format == "json":
        sys.stdout.write(json_text(json.dumps(document(resolved), indent=2, ensure_ascii=False)) + "\n")
    else:
        print_renderable(Group(_table(resolved), *_summary(resolved)))
    return ExitCode.OK


def skipped_by_reason(sources: tuple[SourceSummary, ...]) -> dict[str, int]:
    """Return the entries every source skipped, summed by reason, reasons sorted."""
    totals: dict[str, int] = {}
    for source in sources:
        for reason, count in source.skipped.items():
            totals[reason] = totals.get(reason, 0) + count
    return dict(sorted(totals.items()))


def _host(host: ResolvedHost) -> dict[str, Any]:
    t = host.target
    os_facts = None
    if t.os_version is not None or host.os_caption is not None:
        os_facts = {"version": t.os_version, "caption": host.os_caption, "from": host.os_from}
    return {
        "name": t.name,
        "address": t.address,
        "port": t.port,
        "scheme": t.scheme.value,
        "transport": t.transport.value,
        "winrm": t.winrm.value,
        "group": t.group,
        "tags": dict(sorted(t.tags.items())),
        "site": host.site,
        "os": os_facts,
        "source": {"type": host.origin.type.value, "name": host.origin.source, "entry": host.origin.entry},
        "also": [{"type": o.type.value, "name": o.source, "entry": o.entry} for o in host.also],
    }


def document(resolved: ResolvedInventory) -> dict[str, Any]:
    """Return the `-f json` document: the hosts, the skipped entries by reason, and the sources."""
    return {
        "inventory": resolved.path,
        "hosts": [_host(h) for h in resolved.hosts],
        "skipped": skipped_by_reason(resolved.sources),
        "sources": [s.model_dump() for s in resolved.sources],
    }


def _os_cell(host: ResolvedHost) -> str:
    parts = [p for p in (host.target.os_version, host.os_caption) if p]
    if not parts:
        return ""
    return " ".join(parts) + (f" ({host.os_from})" if host.os_from else "")


def _table(resolved: ResolvedInventory) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("Name", "Address", "Port", "Scheme", "Transport", "Site", "OS", "Tags", "Source"):
        table.add_column(name, overflow="fold", no_wrap=name in ("Port", "Scheme", "Transport"))
    for host in resolved.hosts:
        t = host.target
        # The caption has its own column; the tags column shows the rest.
        tags = ", ".join(f"{k}={v}" for k, v in sorted(t.tags.items()) if k != CAPTION_TAG)
        source = host.origin.describe() + "".join(f"; {o.describe()}" for o in host.also)
        table.add_row(
            console_text(t.name),
            console_text(t.address),
            str(t.port),
            t.scheme.value,
            t.transport.value,
            console_text(host.site or ""),
            console_text(_os_cell(host)),
            console_text(tags, limit=TAGS_SHOWN),
            console_text(source),
        )
    return table


def _summary(resolved: ResolvedInventory) -> list[Text]:
    lines = [console_text(f"{len(resolved.hosts)} hosts from {resolved.path}")]
    for source in resolved.sources:
        skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(source.skipped.items()))
        text = f"source {source.name}: {source.hosts} hosts" + (f", skipped {skipped}" if skipped else "")
        lines.append(console_text(text))
    return lines
