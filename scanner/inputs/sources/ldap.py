"""The `ldap` source: computer accounts of an Active Directory domain (docs/inventory.md#sources).

Reads computer objects with an RFC 2696 paged search, one page at a time, and keeps only what a
host entry needs. Skipped, and counted by reason: disabled accounts (userAccountControl bit
ACCOUNTDISABLE, 0x2, MS-ADTS 2.2.16), accounts whose lastLogonTimestamp (a FILETIME, MS-ADTS
attribute lastLogonTimestamp) is older than `max_logon_age_days`, and objects without a usable
dNSHostName. The connection is LDAPS with certificate verification, or Kerberos with a sealed
SASL layer (ldapconn); a password never comes from the configuration.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from scanner.inputs.inventory.validate import host_problem
from scanner.inputs.sources import (
    HostEntry,
    OsFacts,
    Provenance,
    SourceDefaults,
    SourceError,
    SourceKind,
    SourceResult,
    StrictConfig,
    apply_defaults,
    count,
    secret_key_in,
)
from scanner.inputs.sources.ldapconn import KERBEROS_OVER_LDAPS, Bind, Endpoint, open_session
from scanner.inputs.sources.ldapfilter import FilterSyntaxError, check_filter

ENV_PASSWORD = "NATT_AUDIT_LDAP_PASSWORD"  # noqa: S105 - the variable's name, not a password
ENV_USERNAME = "NATT_AUDIT_LDAP_USERNAME"
MAX_PAGE_SIZE = 1000  # AD's default MaxPageSize (MS-ADTS 3.1.1.3.4.6 LDAP policies)
MAX_PASSWORD_FILE_BYTES = 64 * 1024
# ms-DS-Logon-Time-Sync-Interval defaults to 14 days (MS-ADTS lastLogonTimestamp): the attribute
# may lag that much behind the real last logon, so a younger limit would skip hosts in use.
MIN_LOGON_AGE_DAYS = 14
ACCOUNTDISABLE = 0x2  # MS-ADTS 2.2.16 userAccountControl
FILETIME_EPOCH = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)  # FILETIME: 100 ns intervals since 1601-01-01 UTC
OU_TAG = "ou"
GROUP_TAG_PREFIX = "ad-group:"
GROUP_TAG_VALUE = "member"
ATTRIBUTES = ["dNSHostName", "operatingSystem", "operatingSystemVersion", "userAccountControl", "lastLogonTimestamp"]

# operatingSystemVersion as Windows writes it: "10.0 (19045)", "6.1 (7601)", "5.2 (3790)".
_OS_VERSION = re.compile(r"\s*([0-9]{1,3})\.([0-9]{1,3})\s*\(([0-9]{1,6})\)\s*", re.ASCII)
_HEX = re.compile(rb"[0-9A-Fa-f]{2}")


PASSWORD_HOWTO = (
    f"a password never goes in the inventory; put it in the {ENV_PASSWORD} environment variable, "
    "or in a file named by password_file (its first line), or use auth: kerberos"
)


class LdapSourceConfig(StrictConfig):
    """The `ldap` source as written in an inventory's `sources:` list."""

    type: Literal["ldap"] = "ldap"
    url: StrictStr  # ldaps://dc1.corp.example[:636] or ldap://dc1.corp.example[:389]
    base: StrictStr = Field(min_length=1)
    filter: StrictStr | None = None  # ANDed with (objectCategory=computer)
    scope: Literal["base", "one", "sub"] = "sub"
    auth: Literal["kerberos", "simple"] = "kerberos"  # kerberos: ldap:// (sealed); simple: ldaps:// only
    server_name: StrictStr | None = None  # the DC's host name when url names an address
    ca_file: StrictStr | None = None  # PEM CA for ldaps://; the system store when absent
    username: StrictStr | None = None
    password_file: StrictStr | None = None
    page_size: StrictInt = Field(default=MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    max_logon_age_days: StrictInt | None = Field(default=None, ge=MIN_LOGON_AGE_DAYS, le=100_000)
    groups: StrictBool = False
    timeout: StrictInt | StrictFloat = Field(default=30, gt=0, le=3600)
    defaults: SourceDefaults = SourceDefaults()

    @model_validator(mode="before")
    @classmethod
    def _no_password(cls, data: Any) -> Any:
        key = secret_key_in(data)
        if key is not None:
            raise ValueError(f"{key!r} is refused: {PASSWORD_HOWTO}")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> LdapSourceConfig:
        url = parse_url(self.url)
        tls = url[0] == "ldaps"
        if self.auth == "simple" and not tls:
            # AD answers a simple bind without TLS with strongerAuthRequired anyway (RFC 4513 section 6.3.1);
            # refusing it here means the password never leaves this process in clear.
            raise ValueError(
                "auth: simple over ldap:// would send the password in clear text: use ldaps:// "
                "(with ca_file) or auth: kerberos"
            )
        if self.auth == "kerberos" and tls:
            raise ValueError(KERBEROS_OVER_LDAPS)
        if self.ca_file is not None and not tls:
            raise ValueError("ca_file is only used with ldaps://")
        if self.auth == "kerberos" and self.password_file is not None:
            raise ValueError("password_file is only used with auth: simple (Kerberos uses the ticket cache)")
        if self.auth == "kerberos" and self.server_name is None and _is_address(url[1]):
            raise ValueError(
                f"url names an address ({url[1]}): give server_name, the DC's host name, for the "
                "Kerberos service ldap/<server_name>"
            )
        if self.server_name is not None and host_problem(self.server_name):
            raise ValueError(f"server_name {self.server_name!r} {host_problem(self.server_name)}")
        if self.filter is not None:
            try:
                check_filter(self.filter)
            except FilterSyntaxError as exc:
                raise ValueError(f"filter is not an LDAP filter (RFC 4515): {exc}") from None
        try:
            split_dn(self.base)
        except ValueError as exc:
            raise ValueError(f"base is not a DN (RFC 4514): {exc}") from None
        return self

    def search_filter(self) -> str:
        """Return the filter sent: computers, ANDed with the configured filter."""
        computers = "(objectCategory=computer)"
        return computers if self.filter is None else f"(&{computers}{self.filter})"


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_url(url: str) -> tuple[str, str, int]:
    """Return (scheme, host, port) of an ldap:// or ldaps:// URL; raise ValueError naming what is wrong."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ldap", "ldaps"):
        raise ValueError(f"url must start with ldaps:// or ldap://, not {url[:16]!r}")
    if "@" in parts.netloc:
        raise ValueError("url must not hold user info; credentials never go in a URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("url is the DC only (ldaps://host[:port]); give the DN in base and the filter in filter")
    host = parts.hostname
    if not host:
        raise ValueError("url names no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("url has an invalid port") from None
    return scheme, host, port or (636 if scheme == "ldaps" else 389)


# --- values -------------------------------------------------------------------------------------


def split_dn(dn: str) -> list[tuple[str, str]]:
    """Return the (attribute, value) pairs of a DN, leaf first, with RFC 4514 escapes undone."""
    pairs: list[tuple[str, str]] = []
    raw = dn.encode("utf-8")
    index = 0
    while index < len(raw):
        equals = raw.find(b"=", index)
        if equals < 0:
            raise ValueError(f"RDN {raw[index:].decode('utf-8', 'replace')!r} has no '='")
        attr = raw[index:equals].strip().decode("ascii", "replace")
        if not attr:
            raise ValueError("an RDN has no attribute type")
        value = bytearray()
        index = equals + 1
        while index < len(raw) and raw[index : index + 1] not in (b",", b"+"):
            char = raw[index : index + 1]
            if char == b"\\":
                pair = raw[index + 1 : index + 3]
                if _HEX.fullmatch(pair):
                    value.append(int(pair, 16))
                    index += 3
                    continue
                if index + 1 >= len(raw):
                    raise ValueError("the DN ends with a lone '\\'")
                value += raw[index + 1 : index + 2]
                index += 2
                continue
            value += char
            index += 1
        try:
            pairs.append((attr, value.decode("utf-8")))
        except UnicodeDecodeError:
            raise ValueError("an escaped value is not UTF-8") from None
        index += 1  # past the separator
    return pairs


def parent_dn(dn: str) -> str:
    """Return the DN without its first RDN (after the first comma that is not escaped)."""
    index = 0
    while index < len(dn):
        if dn[index] == "\\":
            index += 2
        elif dn[index] == ",":
            return dn[index + 1 :]
        else:
            index += 1
    return ""


def ou_path(dn: str) -> str | None:
    """Return the OUs of a DN from the domain down, '/'-joined ("Paris/Servers"); '/' and '\\' are escaped."""
    try:
        rdns = split_dn(dn)
    except ValueError:
        return None
    names = [v.replace("\\", "\\\\").replace("/", "\\/") for a, v in reversed(rdns) if a.upper() == "OU"]
    return "/".join(names) or None


def os_version(raw: str | None) -> str | None:
    """Return "10.0.19045" for operatingSystemVersion "10.0 (19045)"; None when missing or garbled."""
    if raw is None:
        return None
    match = _OS_VERSION.fullmatch(raw)
    if match is None:
        return None
    return ".".join(str(int(part)) for part in match.groups())


def filetime(when: dt.datetime) -> int:
    """Return `when` as a FILETIME (100 ns intervals since 1601-01-01 UTC)."""
    delta = when - FILETIME_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def _first(raw: Mapping[str, list[bytes]], name: str) -> str | None:
    values = raw.get(name)
    if not values:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _integer(raw: Mapping[str, list[bytes]], name: str) -> int | None:
    text = _first(raw, name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def read_password_file(path: Path) -> SecretStr:
    """Return the first line of a password file; messages never quote the file."""
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            raw = handle.read(MAX_PASSWORD_FILE_BYTES + 1)
    except OSError as exc:
        raise SourceError("ldap", "credentials", f"password_file {str(path)!r}: {exc.strerror or exc}") from None
    if len(raw) > MAX_PASSWORD_FILE_BYTES:
        raise SourceError("ldap", "credentials", f"password_file {str(path)!r} is larger than 64 KB; it holds one line")
    if stat.S_ISREG(mode) and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SourceError(
            "ldap", "credentials", f"password_file {str(path)!r} is readable by group or others: chmod 600 it"
        )
    first = raw.split(b"\n", 1)[0].removesuffix(b"\r")
    try:
        password = first.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError("ldap", "credentials", f"password_file {str(path)!r}: the first line is not UTF-8") from None
    if not password:
        raise SourceError("ldap", "credentials", f"password_file {str(path)!r}: the first line is empty")
    return SecretStr(password)


# --- the source ---------------------------------------------------------------------------------


class _Collector:
    """Turns raw computer objects into host entries, counting what it skips; holds no raw entry."""

    def __init__(self, config: LdapSourceConfig, origin: str, now: dt.datetime) -> None:
        self.config = config
        self.origin = origin
        self.cutoff = None
        if config.max_logon_age_days is not None:
            self.cutoff = filetime(now - dt.timedelta(days=config.max_logon_age_days))
        self.scheme, self.transport, self.port = apply_defaults(config.defaults)
        self.hosts: list[HostEntry] = []
        self.logons: list[int] = []  # lastLogonTimestamp per host, to keep the newest of duplicates
        self.index: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self.objects = 0
        self._os: dict[tuple[str | None, str | None], OsFacts] = {}
        self._ou: dict[str, str | None] = {}

    def add(self, dn: str, raw: Mapping[str, list[bytes]]) -> None:
        """Take one computer object: skip it with a reason, or keep its host entry."""
        self.objects += 1
        uac = _integer(raw, "userAccountControl")
        if uac is not None and uac & ACCOUNTDISABLE:
            count(self.skipped, "disabled")
            return
        logon = _integer(raw, "lastLogonTimestamp")
        if self.cutoff is not None:
            if logon is None or logon == 0:
                count(self.skipped, "never_logged_on")
                return
            if logon < self.cutoff:
                count(self.skipped, "stale")
                return
        name = _first(raw, "dNSHostName")
        if not name:
            count(self.skipped, "no_dns_host_name")
            return
        if host_problem(name):
            count(self.skipped, "invalid_dns_host_name")
            return
        key = name.rstrip(".").lower()
        seen = self.index.get(key)
        if seen is not None:
            count(self.skipped, "duplicate_dns_host_name")
            if (logon or 0) <= self.logons[seen]:
                return
        entry = HostEntry(
            name=name,
            port=self.port,
            scheme=self.scheme,
            transport=self.transport,
            tags=self._tags(dn, raw),
            site=self.config.defaults.site,
            os=self._os_facts(raw),
            provenance=Provenance(source=SourceKind.LDAP, origin=self.origin, entry=dn),
        )
        if seen is not None:
            self.hosts[seen], self.logons[seen] = entry, logon or 0
            return
        self.index[key] = len(self.hosts)
        self.hosts.append(entry)
        self.logons.append(logon or 0)

    def _os_facts(self, raw: Mapping[str, list[bytes]]) -> OsFacts | None:
        caption = _first(raw, "operatingSystem")
        version = os_version(_first(raw, "operatingSystemVersion"))
        if caption is None and version is None:
            return None
        key = (caption, version)
        facts = self._os.get(key)
        if facts is None:  # a few distinct values for thousands of hosts: share them
            facts = self._os[key] = OsFacts(caption=caption, version=version)
        return facts

    def _tags(self, dn: str, raw: Mapping[str, list[bytes]]) -> dict[str, str]:
        tags: dict[str, str] = {}
        parent = parent_dn(dn)
        if parent not in self._ou:
            self._ou[parent] = ou_path(parent)
        ou = self._ou[parent]
        if ou:
            tags[OU_TAG] = ou
        if self.config.groups:
            for group_dn in raw.get("memberOf") or ():
                try:
                    rdns = split_dn(group_dn.decode("utf-8"))
                except (UnicodeDecodeError, ValueError):
                    continue
                if rdns and rdns[0][0].upper() == "CN" and rdns[0][1]:
                    tags[GROUP_TAG_PREFIX + rdns[0][1]] = GROUP_TAG_VALUE
        return tags

    def result(self, pages: int, extra: dict[str, int]) -> SourceResult:
        return SourceResult(
            source=SourceKind.LDAP,
            origin=self.origin,
            hosts=tuple(self.hosts),
            skipped=dict(sorted(self.skipped.items())),
            stats={"objects": self.objects, "pages": pages, **extra},
        )


class LdapSource:
    """Resolve the computer accounts of an AD domain to host entries."""

    def __init__(
        self,
        config: LdapSourceConfig,
        *,
        environ: Mapping[str, str] | None = None,
        base_dir: Path | None = None,
        now: dt.datetime | None = None,
    ) -> None:
        self.config = config
        self._environ = os.environ if environ is None else environ
        self._base_dir = base_dir
        self._now = now
        scheme, host, port = parse_url(config.url)
        self.origin = f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"
        self.endpoint = Endpoint(
            url=self.origin,
            host=host,
            port=port,
            tls=scheme == "ldaps",
            server_name=config.server_name or host,
            ca_file=self._path(config.ca_file),
            timeout=float(config.timeout),
        )

    def _path(self, value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_absolute() and self._base_dir is not None:
            path = self._base_dir / path
        return str(path)

    def bind(self) -> Bind:
        """Return how to bind; for simple binds read the password now, before any connection."""
        username = self.config.username or self._environ.get(ENV_USERNAME) or None
        if self.config.auth == "kerberos":
            return Bind(kerberos=True, username=username)
        if username is None:
            raise SourceError(
                self.origin, "credentials", f"auth: simple needs a username: give username, or set {ENV_USERNAME}"
            )
        path = self._path(self.config.password_file)
        if path is not None:
            password = read_password_file(Path(path))
        elif self._environ.get(ENV_PASSWORD):
            password = SecretStr(self._environ[ENV_PASSWORD])
        else:
            raise SourceError(self.origin, "credentials", f"auth: simple has no password: {PASSWORD_HOWTO}")
        return Bind(kerberos=False, username=username, password=password)

    def resolve(self) -> SourceResult:
        """Search the directory page by page and return the computers as host entries."""
        bind = self.bind()
        now = self._now or dt.datetime.now(dt.UTC)
        collector = _Collector(self.config, self.origin, now)
        attributes = [*ATTRIBUTES, "memberOf"] if self.config.groups else list(ATTRIBUTES)
        with open_session(self.endpoint, bind) as session:
            pages = session.paged_search(
                self.config.base, self.config.search_filter(), self.config.scope, attributes, self.config.page_size
            )
            for page in pages:
                for dn, raw in page:
                    collector.add(dn, raw)
            extra = {"sealed_frames": session.sealed_frames} if self.config.auth == "kerberos" else {}
            return collector.result(session.pages, extra)
