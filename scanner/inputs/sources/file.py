"""The `file` source: an inventory file (YAML, CSV or text) read by the existing inventory loader."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, StrictStr

from scanner.inputs.inventory import InventoryError, load_inventory
from scanner.inputs.inventory.validate import HTTP_PORT
from scanner.inputs.sources import (
    HostEntry,
    Provenance,
    SourceDefaults,
    SourceError,
    SourceKind,
    SourceResult,
    StrictConfig,
    apply_defaults,
)


class FileSourceConfig(StrictConfig):
    """The `file` source as written in an inventory's `sources:` list."""

    type: Literal["file"] = "file"
    path: StrictStr = Field(min_length=1)
    defaults: SourceDefaults = SourceDefaults()


class FileSource:
    """Resolve an inventory file to host entries; its rules are the file's (docs/inventory.md)."""

    def __init__(self, config: FileSourceConfig, *, base_dir: Path | None = None) -> None:
        self.config = config
        path = Path(config.path).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        self.path = path

    def resolve(self) -> SourceResult:
        """Load the file with load_inventory and return its targets as host entries."""
        scheme, transport, port = apply_defaults(self.config.defaults)
        try:
            inventory = load_inventory(
                self.path,
                default_port=port if port is not None else HTTP_PORT,
                default_scheme=scheme,
                default_transport=transport,
            )
        except InventoryError as exc:
            raise SourceError(str(self.path), "invalid_inventory", exc.problems) from None
        site = self.config.defaults.site
        hosts = tuple(
            HostEntry(
                name=t.name,
                address=None if t.address == t.name else t.address,
                port=t.port,
                scheme=t.scheme,
                transport=t.transport,
                tags=t.tags,
                group=t.group,
                site=site,
                provenance=Provenance(source=SourceKind.FILE, origin=inventory.path, entry=t.source),
            )
            for t in inventory.targets
        )
        return SourceResult(source=SourceKind.FILE, origin=inventory.path, hosts=hosts, stats={"hosts": len(hosts)})
