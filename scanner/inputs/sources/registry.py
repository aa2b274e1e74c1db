"""Every source's configuration as one discriminated union, and the source for a configuration."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import ConfigDict, Field, TypeAdapter

from scanner.inputs.sources import Source
from scanner.inputs.sources.ansible import AnsibleSource, AnsibleSourceConfig
from scanner.inputs.sources.file import FileSource, FileSourceConfig
from scanner.inputs.sources.ldap import LdapSource, LdapSourceConfig

# One entry of a `sources:` list, chosen by its `type:` (ldap, ansible, file).
SourceConfig = Annotated[LdapSourceConfig | AnsibleSourceConfig | FileSourceConfig, Field(discriminator="type")]
# hide_input_in_errors: an entry with an unknown type may still hold a secret; never echo it.
SOURCE_CONFIG: TypeAdapter[SourceConfig] = TypeAdapter(SourceConfig, config=ConfigDict(hide_input_in_errors=True))


def open_source(
    config: SourceConfig, *, base_dir: Path | None = None, environ: Mapping[str, str] | None = None
) -> Source:
    """Return the source for a validated configuration; relative paths are taken from base_dir."""
    if isinstance(config, LdapSourceConfig):
        return LdapSource(config, environ=environ, base_dir=base_dir)
    if isinstance(config, AnsibleSourceConfig):
        return AnsibleSource(config, environ=environ, base_dir=base_dir)
    return FileSource(config, base_dir=base_dir)
