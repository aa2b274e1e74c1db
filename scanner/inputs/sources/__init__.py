"""Inventory sources: where hosts come from besides an inventory file (docs/inventory.md#sources).

A source (the `ldap`, `ansible` and `file` modules) resolves to a `SourceResult`: the hosts it
found as frozen `HostEntry` values, and the entries it skipped, counted by reason. Everything is
data; nothing here logs. `HostEntry.to_target()` turns an entry into the `Target` a scan uses,
with the same checks an inventory file's entries get (docs/inventory.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Protocol

from pydantic import ConfigDict, Field, StrictInt, StrictStr, model_validator

from scanner.core.errors import NattError
from scanner.core.models import AuthMethod, Frozen, Scheme, Target
from scanner.core.sanitize import has_unsafe
from scanner.inputs.inventory.validate import HTTP_PORT, HTTPS_PORT, host_problem, show

MAX_SHOWN_PROBLEMS = 20
SITE_TAG = "site"
# The source's OS caption, as a tag: an inventory fact a policy scope can select on
# (`tags: {os_caption: {glob: "Windows Server*"}}`), never an OS fact (docs/inventory.md#os-facts-from-the-inventory).
CAPTION_TAG = "os_caption"
MAX_CAPTION = 256


class SourceKind(StrEnum):
    """The kind of a source, as written in `type:`."""

    LDAP = "ldap"
    ANSIBLE = "ansible"
    FILE = "file"


class SourceError(NattError):
    """A source that cannot be resolved; `reason` is a short stable code, the text never holds a secret."""

    def __init__(self, origin: str, reason: str, problems: str | Iterable[str]) -> None:
        self.origin = origin
        self.reason = reason
        self.problems = (problems,) if isinstance(problems, str) else tuple(problems)
        shown = list(self.problems[:MAX_SHOWN_PROBLEMS])
        if len(self.problems) > MAX_SHOWN_PROBLEMS:
            shown.append(f"... and {len(self.problems) - MAX_SHOWN_PROBLEMS} more problems")
        super().__init__(f"{origin}: " + "\n".join(shown))


class StrictConfig(Frozen):
    """Base of source configuration blocks: strict types, unknown keys refused, input never echoed."""

    # hide_input_in_errors: a refused block may hold a secret someone typed by mistake, and
    # str(ValidationError) would otherwise quote the whole input.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class SourceDefaults(StrictConfig):
    """A source's `defaults:` block, applied to every host the source does not say otherwise for."""

    transport: AuthMethod | None = None
    scheme: Scheme | None = None
    port: StrictInt | None = Field(default=None, ge=1, le=65535)
    site: StrictStr | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _no_basic_over_http(self) -> SourceDefaults:
        if self.transport is AuthMethod.BASIC and self.scheme is not Scheme.HTTPS:
            raise ValueError("transport basic requires scheme https (Basic over HTTP is refused)")
        return self


class OsFacts(Frozen):
    """What a source says about a host's OS; the caption is display-only, identity is the version."""

    caption: str | None = None  # "Windows Server 2019 Standard": untrusted, never used to decide
    version: str | None = None  # "10.0.19045"; None when the source's value is missing or garbled


class Provenance(Frozen):
    """Where an entry came from: the source, where the source is, and the item inside it."""

    source: SourceKind
    origin: str  # "ldaps://dc1.lab.test:636", "inventories/hosts.ini", "hosts.yaml"
    entry: str  # the object's DN, the Ansible inventory host name, or "path:line" of a file entry

    def locator(self) -> str:
        """Return one string naming the entry, for `Target.source` and messages."""
        if self.source is SourceKind.FILE:
            return self.entry
        return f"{self.origin} {self.entry}"


class HostEntry(Frozen):
    """One host a source found; `to_target()` makes the `Target` a scan needs."""

    name: str
    address: str | None = None  # None: connect to `name`
    port: int | None = Field(default=None, ge=1, le=65535)  # None: 5985 for http, 5986 for https
    scheme: Scheme = Scheme.HTTP
    transport: AuthMethod = AuthMethod.NTLM
    tags: dict[str, str] = Field(default_factory=dict)
    group: str | None = None
    site: str | None = None
    os: OsFacts | None = None
    provenance: Provenance

    def problems(self) -> list[str]:
        """Return why this entry cannot be a Target (the inventory file rules), empty when it can."""
        found: list[str] = []
        why = host_problem(self.name)
        if why:
            found.append(f"name {show(self.name)} {why}")
        if self.address is not None:
            why = host_problem(self.address)
            if why:
                found.append(f"address {show(self.address)} {why}")
        if self.transport is AuthMethod.BASIC and self.scheme is Scheme.HTTP:
            found.append("transport basic requires scheme https (Basic over HTTP is refused)")
        for key, value in self.all_tags().items():
            for text, what in ((key, "key"), (value, "value")):
                if text == "" or not text.isprintable():
                    found.append(f"tag {show(key)}: the {what} is empty or holds control characters")
        return found

    def all_tags(self) -> dict[str, str]:
        """Return the tags with `site` added as the `site` tag (a tag already named site wins)."""
        if self.site is None or SITE_TAG in self.tags:
            return dict(self.tags)
        return {**self.tags, SITE_TAG: self.site}

    def to_target(self) -> Target:
        """Return the Target for this entry; raise SourceError when it breaks an inventory rule."""
        found = self.problems()
        if found:
            raise SourceError(self.provenance.locator(), "invalid_host", found)
        port = self.port
        if port is None:
            port = HTTPS_PORT if self.scheme is Scheme.HTTPS else HTTP_PORT
        tags = self.all_tags()
        caption = self.os.caption if self.os is not None else None
        # The caption is directory text: kept as a tag only when it is safe, plain text (it is
        # display and scope data; a garbled one must not make the host unusable).
        safe = caption is not None and 0 < len(caption) <= MAX_CAPTION and caption.isprintable()
        if caption is not None and safe and not has_unsafe(caption) and CAPTION_TAG not in tags:
            tags[CAPTION_TAG] = caption
        return Target(
            name=self.name,
            address=self.address if self.address is not None else self.name,
            port=port,
            scheme=self.scheme,
            transport=self.transport,
            tags=tags,
            group=self.group,
            source=self.provenance.locator(),
            # The directory's version lets the collector skip the WQL OS read on NT 6.0+ hosts;
            # what the host says, when it says it, wins (docs/wire.md, OS facts).
            os_version=self.os.version if self.os is not None else None,
        )


class SourceResult(Frozen):
    """What one source resolved to: its hosts, and the entries it skipped counted by reason."""

    source: SourceKind
    origin: str
    hosts: tuple[HostEntry, ...]
    skipped: dict[str, int] = Field(default_factory=dict)  # "disabled": 12, "stale": 3, ...
    stats: dict[str, int] = Field(default_factory=dict)  # source-specific counters, e.g. ldap "pages"

    @property
    def skipped_total(self) -> int:
        """Return how many entries were skipped, whatever the reason."""
        return sum(self.skipped.values())

    def targets(self) -> list[Target]:
        """Return every host as a Target; raise SourceError listing every entry that cannot be one."""
        built: list[Target] = []
        problems: list[str] = []
        for host in self.hosts:
            found = host.problems()
            if found:
                problems.extend(f"{host.provenance.locator()}: {p}" for p in found)
            elif not problems:
                built.append(host.to_target())
        if problems:
            raise SourceError(self.origin, "invalid_host", problems)
        return built


class Source(Protocol):
    """Anything that resolves to hosts."""

    def resolve(self) -> SourceResult:
        """Return the hosts of this source; raise SourceError with a specific reason when it cannot."""
        ...


def count(skipped: dict[str, int], reason: str) -> None:
    """Add one skipped entry for `reason`."""
    skipped[reason] = skipped.get(reason, 0) + 1


def apply_defaults(
    defaults: SourceDefaults,
    *,
    scheme: Scheme | None = None,
    transport: AuthMethod | None = None,
    port: int | None = None,
) -> tuple[Scheme, AuthMethod, int | None]:
    """Return scheme, transport and port: the host's own, else the source's defaults, else http/ntlm."""
    return (
        scheme or defaults.scheme or Scheme.HTTP,
        transport or defaults.transport or AuthMethod.NTLM,
        port if port is not None else defaults.port,
    )


SECRET_KEYS = frozenset({"password", "passwd", "pwd", "pass", "secret", "bind_password", "credentials", "token"})


def secret_key_in(data: object) -> str | None:
    """Return the first key of a configuration mapping that would hold a secret, or None."""
    if not isinstance(data, Mapping):
        return None
    found = sorted(k for k in data if isinstance(k, str) and k.lower() in SECRET_KEYS)
    return found[0] if found else None
