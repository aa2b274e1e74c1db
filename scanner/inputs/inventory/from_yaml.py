"""YAML inventories: `hosts`, optional `defaults` and `sources`, strictly validated (docs/inventory.md "YAML")."""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictInt, StrictStr, ValidationError

from scanner.core import yamlfile
from scanner.core.models import AuthMethod, Scheme, Strict, WinRMStack
from scanner.inputs.inventory.validate import Defaults, Entry, InventoryError, Problems, SourceSpec

MAX_YAML_BYTES = 8 * 1024 * 1024  # pure-Python YAML parses ~0.3 MB/s; 8 MB (~85,000 hosts) stays bounded


class _YamlDefaults(Strict):
    port: StrictInt | None = None
    scheme: Scheme | None = None
    transport: AuthMethod | None = None
    tags: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    winrm: WinRMStack | None = None
    site: StrictStr | None = None


class _YamlHost(Strict):
    name: StrictStr
    address: StrictStr | None = None
    port: StrictInt | None = None
    scheme: Scheme | None = None
    transport: AuthMethod | None = None
    tags: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    group: StrictStr | None = None
    winrm: WinRMStack | None = None
    os_version: StrictStr | None = None
    spn: StrictStr | None = None
    site: StrictStr | None = None


class _YamlFile(Strict):
    defaults: _YamlDefaults = _YamlDefaults()
    hosts: list[Any]


class _YamlFileWithSources(Strict):
    # With `sources:` the file's own hosts are optional: the sources may give them all.
    defaults: _YamlDefaults = _YamlDefaults()
    hosts: list[Any] = Field(default_factory=list)
    sources: list[Any]


def _pydantic_problems(
    doc: yamlfile.YamlDocument, exc: ValidationError, prefix: yamlfile.Loc, problems: Problems, model: Any
) -> None:
    for loc, text in doc.problems(exc, prefix, model):
        problems.add(_yaml_where(doc, loc), text)


def _yaml_where(doc: yamlfile.YamlDocument, loc: yamlfile.Loc) -> str:
    line, column = doc.where(loc)
    if line is None:
        return doc.path
    return f"{doc.path}:{line}" + (f":{column}" if column else "")


def yaml_entries(
    text: str, path: str, problems: Problems, defaults: Defaults, max_hosts: int, sources: list[SourceSpec]
) -> tuple[Defaults, list[Entry]]:
    """Parse a YAML inventory into entries; return them with the defaults the file sets.

    The entries of a `sources:` list are appended to `sources` as written, with their places in
    the file, for scanner.inputs.sources.compose to validate and resolve.
    """
    try:
        doc = yamlfile.load_text(text, path, max_bytes=MAX_YAML_BYTES)
    except yamlfile.FileError as exc:
        raise InventoryError([str(exc)]) from None
    try:
        return _entries(doc, problems, defaults, max_hosts, sources)
    finally:
        # The entries hold what they need; drop the parsed document (dicts for every host) before
        # the targets are built, so both are never in memory together (docs/performance.md).
        doc.data = None


def _entries(
    doc: yamlfile.YamlDocument, problems: Problems, defaults: Defaults, max_hosts: int, sources: list[SourceSpec]
) -> tuple[Defaults, list[Entry]]:
    if doc.data is None:
        return defaults, []
    if not isinstance(doc.data, dict):
        problems.add(
            _yaml_where(doc, ()), "the file must be a mapping with 'hosts' (and optional 'defaults')"
        )
        return defaults, []
    model = _YamlFileWithSources if "sources" in doc.data else _YamlFile
    try:
        top: _YamlFile | _YamlFileWithSources = model.model_validate(doc.data)
    except ValidationError as exc:
        _pydantic_problems(doc, exc, (), problems, _YamlFile)
        return defaults, []
    if isinstance(top, _YamlFileWithSources):
        if not top.sources:
            problems.add(_yaml_where(doc, ("sources",)), "sources: the list is empty; list at least one source")
        for index, item in enumerate(top.sources):

            def locate(loc: tuple[str | int, ...], index: int = index) -> str:
                return _yaml_where(doc, ("sources", index, *loc))

            sources.append(SourceSpec(index=index, data=item, where=locate))
    if len(top.hosts) > max_hosts:
        problems.add(_yaml_where(doc, ("hosts",)), f"more than {max_hosts} hosts; the limit is {max_hosts}")
        return defaults, []
    file_defaults = Defaults(
        port=top.defaults.port if top.defaults.port is not None else defaults.port,
        scheme=top.defaults.scheme or defaults.scheme,
        transport=top.defaults.transport or defaults.transport,
        winrm=top.defaults.winrm or defaults.winrm,
        site=top.defaults.site if top.defaults.site is not None else defaults.site,
    )
    if top.defaults.port is not None and not 1 <= top.defaults.port <= 65535:
        message = f"port {top.defaults.port} must be an integer 1..65535"
        problems.add(_yaml_where(doc, ("defaults", "port")), message)
        return defaults, []
    entries: list[Entry] = []
    for index, item in enumerate(top.hosts):
        try:
            host = _YamlHost.model_validate(item)
        except ValidationError as exc:
            _pydantic_problems(doc, exc, ("hosts", index), problems, _YamlHost)
            continue

        def where(field: str, index: int = index) -> str:
            return _yaml_where(doc, ("hosts", index, field))

        line, _ = doc.where(("hosts", index))
        # An explicit defaults.port applies whatever the scheme; otherwise the scheme picks 5985/5986.
        port: int | None = host.port
        if port is None and top.defaults.port is not None:
            port = top.defaults.port
        entries.append(
            Entry(
                source=f"{doc.path}:{line}",
                where=where,
                name=host.name,
                address=host.address,
                port=port,
                scheme=host.scheme,
                transport=host.transport,
                tags={**top.defaults.tags, **host.tags},
                group=host.group,
                winrm=host.winrm,
                os_version=host.os_version,
                spn=host.spn,
                site=host.site,
            )
        )
    return file_defaults, entries
