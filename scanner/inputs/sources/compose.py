"""An inventory file with its `sources:`: every source resolved, merged into one inventory (docs/inventory.md#sources).

A YAML inventory may list `sources:` next to `hosts:`. Each source (ldap, ansible, file) is
resolved in the listed order, before any host is contacted; a source that fails stops the whole
inventory (an InventoryError naming the entry's file:line, exit 2): a partial inventory is never
scanned. The same host (name compared case-insensitively, without a trailing dot) from several
places becomes one target and a warning naming them all; a field one place leaves unsaid (an LDAP
computer has no address, and no port without `defaults:`) is taken from the place that says it,
and two places that say different things are an error naming both. A `file` source may include
another YAML inventory with sources; a file that includes itself, directly or not, is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from scanner.core.models import DEFAULT_SITE, Frozen, Target, site_problem
from scanner.inputs.inventory import Inventory, InventoryError, SourceSpec, SourceSummary, load_inventory
from scanner.inputs.inventory.validate import HTTP_PORT, address_key, show
from scanner.inputs.sources import (
    CAPTION_TAG,
    SITE_TAG,
    SourceDefaults,
    SourceError,
    SourceKind,
    SourceResult,
    apply_defaults,
)
from scanner.inputs.sources.file import FileSourceConfig
from scanner.inputs.sources.registry import SOURCE_CONFIG, SourceConfig, open_source

ANSIBLE_PREFIX = "ansible:"
FILE_PREFIX = "file:"
# Fields compared when one host comes from several places; a place may leave address and port unsaid.
_FIELDS = ("address", "port", "scheme", "transport", "winrm", "group", "os_version")


class HostOrigin(Frozen):
    """Where one host of a composed inventory came from."""

    type: SourceKind
    source: str  # the source as shown: "hosts.yaml:12", "ldaps://dc1.corp.example:636", "ansible:hosts.ini"
    entry: str  # the item in it: "hosts.yaml:12", the computer object's DN, the Ansible host name

    def describe(self) -> str:
        """Return the origin in one string, for messages."""
        if self.type is SourceKind.FILE:
            return self.source
        return f"{self.source} ({self.entry})"


class ResolvedHost(Frozen):
    """One target of a composed inventory, with what `inventory show` tells about it."""

    target: Target
    origin: HostOrigin
    also: tuple[HostOrigin, ...] = ()  # the other places that listed the same host
    os_caption: str | None = None  # what the source calls the OS: display and scopes only
    os_from: str | None = None  # the place that gave target.os_version
    unsaid: frozenset[str] = frozenset()  # fields this place did not state ("address", "port")

    @property
    def site(self) -> str | None:
        """Return the host's site: the `site` tag (a source's defaults.site ends up there)."""
        return self.target.tags.get(SITE_TAG)


class ResolvedInventory(Frozen):
    """An inventory file and its sources, merged: hosts in order (the file's own first), sources listed."""

    path: str
    hosts: tuple[ResolvedHost, ...]
    sources: tuple[SourceSummary, ...] = ()
    warnings: tuple[str, ...] = ()

    def inventory(self) -> Inventory:
        """Return the Inventory a scan uses; its path stays the file's, so its identity is stable."""
        return Inventory(
            path=self.path,
            targets=tuple(h.target for h in self.hosts),
            warnings=self.warnings,
            sources=self.sources,
        )


def load_with_sources(
    path: str | Path, *, environ: Mapping[str, str] | None = None, default_site: str = DEFAULT_SITE
) -> Inventory:
    """Read an inventory file for a scan; one with `sources:` has them resolved and merged."""
    specs: list[SourceSpec] = []
    inventory = load_inventory(path, sources=specs, default_site=default_site)
    if not specs:
        return inventory  # a plain file: its targets as the loader built them, nothing else held
    return _Composer(environ, default_site).compose(Path(path), inventory, specs, (), None).inventory()


def resolve_inventory(path: str | Path, *, environ: Mapping[str, str] | None = None) -> ResolvedInventory:
    """Read an inventory file with its sources, keeping where every host came from."""
    return _Composer(environ).resolve(Path(path), (), None)


@dataclass
class _Merged:
    """Hosts by identity, in first-seen order, with the warnings and conflicts found while merging."""

    hosts: dict[str, ResolvedHost] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def add(self, host: ResolvedHost) -> None:
        key = host.target.name.rstrip(".").lower()
        first = self.hosts.get(key)
        if first is None:
            self.hosts[key] = host
            return
        merged, disagreements = _merge(first, host)
        places = f"{first.origin.describe()} and {host.origin.describe()}"
        if disagreements:
            differ = "; ".join(disagreements)
            self.conflicts.append(f"host {show(host.target.name)} is listed by {places} with different {differ}")
            return
        self.hosts[key] = merged
        self.warnings.append(f"host {show(host.target.name)} is listed by {places}: scanned once")


def _value(host: ResolvedHost, name: str) -> object:
    if name in host.unsaid:
        return None
    value: object = getattr(host.target, name)
    same = isinstance(value, str) and value.rstrip(".").lower() == host.target.name.rstrip(".").lower()
    if name == "address" and same:
        return None  # "connect to the name" is what every place means when it gives no address
    return value


def _shown(value: object) -> str:
    return show(str(value)) if isinstance(value, str) else str(value)


def _merge(first: ResolvedHost, other: ResolvedHost) -> tuple[ResolvedHost, list[str]]:
    """Return the two entries of one host as one, and what they disagree on (empty when they agree)."""
    update: dict[str, object] = {}
    disagreements: list[str] = []
    unsaid = set(first.unsaid)
    for name in _FIELDS:
        mine, theirs = _value(first, name), _value(other, name)
        if mine is None and theirs is not None:
            update[name] = getattr(other.target, name)
            unsaid.discard(name)
        elif mine is not None and theirs is not None and str(mine).lower() != str(theirs).lower():
            disagreements.append(f"{name} ({_shown(mine)} and {_shown(theirs)})")
    tags = dict(first.target.tags)
    for key, value in other.target.tags.items():
        if key in tags and tags[key] != value:
            disagreements.append(f"tag {show(key)} ({show(tags[key])} and {show(value)})")
        tags.setdefault(key, value)
    update["tags"] = tags
    os_from = first.os_from
    if "os_version" in update:
        os_from = other.os_from
    merged = first.model_copy(
        update={
            "target": first.target.model_copy(update=update),
            "also": (*first.also, other.origin, *other.also),
            "os_caption": first.os_caption or other.os_caption,
            "os_from": os_from,
            "unsaid": frozenset(unsaid & set(other.unsaid)),
        }
    )
    return merged, disagreements


class _Composer:
    """Resolves one inventory file and, recursively, the files its `file` sources include."""

    def __init__(self, environ: Mapping[str, str] | None, default_site: str = DEFAULT_SITE) -> None:
        self.environ = environ
        self.default_site = default_site

    def resolve(self, path: Path, stack: tuple[Path, ...], defaults: SourceDefaults | None) -> ResolvedInventory:
        specs: list[SourceSpec] = []
        # A file source's defaults are the loader's defaults, as FileSource applies them.
        scheme, transport, port = apply_defaults(defaults or SourceDefaults())
        inventory = load_inventory(
            path,
            default_port=port if port is not None else HTTP_PORT,
            default_scheme=scheme,
            default_transport=transport,
            sources=specs,
            default_site=self.default_site,
        )
        return self.compose(path, inventory, specs, stack, defaults)

    def compose(
        self,
        path: Path,
        inventory: Inventory,
        specs: Sequence[SourceSpec],
        stack: tuple[Path, ...],
        defaults: SourceDefaults | None,
    ) -> ResolvedInventory:
        """Merge the file's own hosts with what each of its sources resolves to."""
        site = defaults.site if defaults is not None else None
        merged = _Merged()
        for target in inventory.targets:
            merged.add(
                ResolvedHost(
                    target=_with_site(target, site),
                    origin=HostOrigin(type=SourceKind.FILE, source=target.source, entry=target.source),
                    os_from=target.source if target.os_version is not None else None,
                )
            )
        configs = self._validate(specs)
        summaries: list[SourceSummary] = []
        warnings = list(inventory.warnings)
        here = path.resolve()
        for spec, config in zip(specs, configs, strict=True):
            if isinstance(config, FileSourceConfig):
                nested = self._include(path, here, spec, config, stack)
                summaries.append(SourceSummary(type="file", name=FILE_PREFIX + nested.path, hosts=len(nested.hosts)))
                summaries.extend(nested.sources)
                warnings.extend(nested.warnings)
                for host in nested.hosts:
                    merged.add(host.model_copy(update={"target": _with_site(host.target, site)}))
                continue
            result = self._run(path, spec, config)
            name = ANSIBLE_PREFIX + result.origin if result.source is SourceKind.ANSIBLE else result.origin
            summary = SourceSummary(
                type=result.source.value, name=name, hosts=len(result.hosts), skipped=dict(result.skipped)
            )
            summaries.append(summary)
            for host in _hosts(spec, result, name):
                merged.add(host.model_copy(update={"target": _with_site(host.target, site)}))
        problems = list(merged.conflicts)
        problems.extend(_endpoint_conflicts(list(merged.hosts.values())))
        if problems:
            raise InventoryError([f"{path}: {p}" for p in problems])
        if not merged.hosts:
            raise InventoryError([f"{path}: the inventory and its sources list no hosts"])
        return ResolvedInventory(
            path=str(path),
            hosts=tuple(merged.hosts.values()),
            sources=tuple(summaries),
            warnings=(*warnings, *merged.warnings),
        )

    @staticmethod
    def _validate(specs: Sequence[SourceSpec]) -> list[SourceConfig]:
        """Validate every `sources:` entry before any is resolved, so a typo costs no directory query."""
        configs: list[SourceConfig] = []
        problems: list[str] = []
        for spec in specs:
            try:
                configs.append(SOURCE_CONFIG.validate_python(spec.data))
            except ValidationError as exc:
                for err in exc.errors(include_url=False):
                    # pydantic adds the union member ("ldap", "function-after[...]") to loc: keep real keys
                    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in _MEMBERS)))
                    key = ".".join(str(p) for p in ("sources", spec.index, *loc))
                    problems.append(f"{spec.where(loc)}: {key}: {err['msg']}")
        if problems:
            raise InventoryError(problems)
        return configs

    def _include(
        self, path: Path, here: Path, spec: SourceSpec, config: FileSourceConfig, stack: tuple[Path, ...]
    ) -> ResolvedInventory:
        """Resolve a `file` source; refuse a file that includes itself, directly or through others."""
        child = Path(config.path).expanduser()
        if not child.is_absolute():
            child = path.parent / child
        chain = (*stack, here)
        if child.resolve() in chain:
            loop = " -> ".join(str(p) for p in (*chain[chain.index(child.resolve()) :], child.resolve()))
            raise InventoryError([f"{spec.where(('path',))}: file source {show(config.path)} includes itself ({loop})"])
        return self.resolve(child, chain, config.defaults)

    def _run(self, path: Path, spec: SourceSpec, config: SourceConfig) -> SourceResult:
        """Resolve one ldap or ansible source; its failure is the inventory's, with the entry's place."""
        source = open_source(config, base_dir=path.parent, environ=self.environ)
        try:
            result = source.resolve()
            result.targets()  # every host must make a Target, checked before anything is used
        except SourceError as exc:
            where = spec.where(())
            # InventoryError shows the first problems and counts the rest.
            raise InventoryError(
                [f"{where}: {config.type} source {exc.origin} failed ({exc.reason}): {p}" for p in exc.problems]
            ) from None
        return result


_MEMBERS = frozenset(kind.value for kind in SourceKind)


def _with_site(target: Target, site: str | None) -> Target:
    """Return the target with the including source's site, unless the host names its own.

    The site is the target's `site` (the queue a distributed scan sends the host to,
    docs/sites.md) and travels as the `site` tag too, as HostEntry.all_tags() carries it
    (docs/inventory.md#sites).
    """
    if site is None or SITE_TAG in target.tags:
        return target
    update: dict[str, object] = {"tags": {**target.tags, SITE_TAG: site}}
    if target.site == DEFAULT_SITE and site_problem(site) is None:
        update["site"] = site
    return target.model_copy(update=update)


def _hosts(spec: SourceSpec, result: SourceResult, name: str) -> list[ResolvedHost]:
    """Return a source's hosts as resolved hosts, remembering what each entry left unsaid."""
    hosts: list[ResolvedHost] = []
    for entry in result.hosts:
        target = entry.to_target()
        unsaid = {field for field, value in (("address", entry.address), ("port", entry.port)) if value is None}
        os_version = entry.os.version if entry.os is not None else None
        hosts.append(
            ResolvedHost(
                target=target,
                origin=HostOrigin(type=result.source, source=name, entry=entry.provenance.entry),
                os_caption=target.tags.get(CAPTION_TAG),
                os_from=name if os_version is not None else None,
                unsaid=frozenset(unsaid),
            )
        )
    return hosts


def _endpoint_conflicts(hosts: list[ResolvedHost]) -> list[str]:
    """Return a problem for every two hosts of different names at the same address and port."""
    seen: dict[tuple[str, int], ResolvedHost] = {}
    problems: list[str] = []
    for host in hosts:
        if "address" in host.unsaid and "port" in host.unsaid:
            continue
        key = (address_key(host.target.address), host.target.port)
        first = seen.setdefault(key, host)
        if first is not host:
            problems.append(
                f"hosts {show(first.target.name)} ({first.origin.describe()}) and {show(host.target.name)} "
                f"({host.origin.describe()}) are both {show(host.target.address)} port {host.target.port}"
            )
    return problems
