"""Read an inventory of hosts (YAML, CSV or text), validating every entry and rewriting nothing.

Formats and rules are documented in docs/inventory.md: one module per format (from_yaml, from_csv,
from_text) turns the file into entries, and validate.py checks them and builds the Targets.
Parsing never resolves or connects to anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from scanner.core.bounded import InputFileError, read_bounded
from scanner.core.models import DEFAULT_SITE, AuthMethod, Scheme
from scanner.inputs.inventory.from_csv import csv_entries
from scanner.inputs.inventory.from_text import text_entries
from scanner.inputs.inventory.from_yaml import yaml_entries
from scanner.inputs.inventory.validate import (
    HTTP_PORT,
    Defaults,
    Entry,
    Inventory,
    InventoryError,
    Problems,
    SourceSpec,
    SourceSummary,
    finish,
)

__all__ = [
    "Format",
    "Inventory",
    "InventoryError",
    "SourceSpec",
    "SourceSummary",
    "detect_format",
    "load_inventory",
    "parse_inventory",
]

Format = Literal["yaml", "csv", "text"]

MAX_FILE_BYTES = 64 * 1024 * 1024  # a million text lines is ~30 MB; anything bigger is not an inventory


def detect_format(path: str | Path) -> Format:
    """Return the format implied by the file name: .yaml/.yml, .csv, anything else is text."""
    suffix = Path(path).suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".csv":
        return "csv"
    return "text"


def parse_inventory(
    text: str,
    path: str,
    *,
    fmt: Format,
    default_port: int = HTTP_PORT,
    default_scheme: Scheme = Scheme.HTTP,
    default_transport: AuthMethod = AuthMethod.NTLM,
    max_hosts: int = 1_000_000,
    default_site: str = DEFAULT_SITE,
    sources: list[SourceSpec] | None = None,
) -> Inventory:
    """Parse inventory text already read from `path`; raise InventoryError listing every problem.

    A YAML inventory may list `sources:`; they are appended to `sources` as written (resolving
    them is scanner.inputs.sources.compose's job). Without that list, a file with sources is refused.
    """
    problems = Problems()
    warnings: list[str] = []
    defaults = Defaults(port=default_port, scheme=default_scheme, transport=default_transport, site=default_site)
    entries: Iterator[Entry]
    listed_sources: list[SourceSpec] = []
    if fmt == "yaml":
        defaults, listed = yaml_entries(text, path, problems, defaults, max_hosts, listed_sources)
        entries = iter(listed)
        if listed_sources and sources is None:
            problems.add(
                listed_sources[0].where(()),
                "this inventory lists sources: read it with scanner.inputs.sources.compose (docs/inventory.md#sources)",
            )
    elif fmt == "csv":
        entries = csv_entries(text, path, problems, max_hosts)
    else:
        entries = text_entries(text, path, problems, warnings, max_hosts)
    inventory = finish(path, entries, defaults, problems, warnings, allow_empty=bool(listed_sources))
    if sources is not None:
        sources.extend(listed_sources)
    return inventory


def load_inventory(
    path: str | Path,
    *,
    default_port: int = HTTP_PORT,
    default_scheme: Scheme = Scheme.HTTP,
    default_transport: AuthMethod = AuthMethod.NTLM,
    max_hosts: int = 1_000_000,
    default_site: str = DEFAULT_SITE,
    sources: list[SourceSpec] | None = None,
) -> Inventory:
    """Read and validate an inventory file; the format follows the file extension.

    `sources` receives the entries of a YAML inventory's `sources:` list (see parse_inventory).
    """
    name = str(path)
    try:
        raw = read_bounded(path, MAX_FILE_BYTES)
    except InputFileError as exc:
        if exc.too_large:
            raise InventoryError([f"{name}: larger than {MAX_FILE_BYTES} bytes; this is not an inventory"]) from None
        raise InventoryError([f"{name}: cannot read the inventory: {exc.reason}"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InventoryError([f"{name}:{line}: not UTF-8 (byte {exc.start})"]) from None
    return parse_inventory(
        text,
        name,
        fmt=detect_format(path),
        default_port=default_port,
        default_scheme=default_scheme,
        default_transport=default_transport,
        max_hosts=max_hosts,
        default_site=default_site,
        sources=sources,
    )
