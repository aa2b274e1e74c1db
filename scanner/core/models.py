"""Frozen values that flow between the stages: targets in, observations out."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

# Registry paths under HKLM, the one definition the scanner, the rules and the lab share
# (docs/domain.md#registry-locations): Services\IPsec on XP SP2/2003, Services\PolicyAgent on Vista
# and later (KB 885407, KB 926179).
IPSEC_KEY = "SYSTEM\\CurrentControlSet\\Services\\IPsec"
POLICYAGENT_KEY = "SYSTEM\\CurrentControlSet\\Services\\PolicyAgent"
VALUE_NAME = "AssumeUDPEncapsulationContextOnSendRule"

# Hosts in flight when neither the configuration nor --concurrency says otherwise (docs/config.md);
# docs/performance.md measures why this is enough for 2,000 hosts at 20 ms latency.
DEFAULT_CONCURRENCY = 64

# The site of a host with none in the inventory and no `default_site` in the configuration
# (docs/sites.md#sites). A site names the queue its hosts are sent to by a distributed scan, so it
# is a short ASCII token: letters, digits, '.', '_' and '-', starting with a letter or digit.
DEFAULT_SITE = "default"
_SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", re.ASCII)


def site_problem(name: str) -> str | None:
    """Return why `name` is not a site name, or None when it is one."""
    if not _SITE_NAME.fullmatch(name):
        return "must be 1-63 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit"
    return None
# Hosts that may reject the scan account's logon, with none accepting it, before a scan stops so the
# account is not locked out (docs/authentication.md#lockout-safety; `max_auth_failures` in docs/config.md).
DEFAULT_MAX_AUTH_FAILURES = 3

# A dotted Windows version: 1 to 4 ASCII-digit parts ("10", "6.0", "10.0.19045"). Each part is
# bounded, so host-supplied text never turns into a huge integer.
_VERSION = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,10}){0,3}", re.ASCII)


def parse_version(text: str) -> tuple[int, ...] | None:
    """Parse "10.0.19045" into (10, 0, 19045); None when it is not a dotted version."""
    text = text.strip()
    if not _VERSION.fullmatch(text):
        return None
    return tuple(int(part) for part in text.split("."))


class Frozen(BaseModel):
    """Base for immutable, strictly validated values."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# Policies, waivers, the configuration, YAML inventories and lab estates all derive from Strict, so a
# typo in any of them is refused at load with its file:line:col instead of silently taking a default.
class Strict(Frozen):
    """Base for models read from files people write: an unknown key is an error, never ignored."""


class Scheme(StrEnum):
    """URL scheme of a WinRM listener."""

    HTTP = "http"
    HTTPS = "https"


class AuthMethod(StrEnum):
    """How the scanner authenticates to a host (docs/authentication.md#choosing-a-transport)."""

    NTLM = "ntlm"
    KERBEROS = "kerberos"
    CREDSSP = "credssp"
    BASIC = "basic"
    NEGOTIATE = "negotiate"  # Kerberos, and NTLM for a host Kerberos cannot name or reach, if allowed


# Transports that log on with Kerberos, and so need the scan's ticket (docs/authentication.md#lockout-safety).
KERBEROS_METHODS = frozenset({AuthMethod.KERBEROS, AuthMethod.NEGOTIATE})
# "SERVICE/host" (no realm, no port): the service principal a Kerberos host is asked for by.
SPN_PATTERN = r"^[A-Za-z][A-Za-z0-9-]{0,63}/[A-Za-z0-9][A-Za-z0-9.-]{0,252}$"


class WinRMStack(StrEnum):
    """Which WinRM generation a host runs, as far as the inventory knows."""

    CURRENT = "current"  # WinRM 2.0 and later: listeners on 5985 (HTTP) / 5986 (HTTPS)
    LEGACY = "legacy"  # WinRM 1.1 (XP SP2 / Server 2003 download, KB 936059): 80 / 443


OS_VERSION_PATTERN = r"^\d{1,5}\.\d{1,5}(\.\d{1,10}){0,2}$"


class Target(Frozen):
    """One inventory entry: where a host is and how to reach it."""

    name: str
    address: str
    port: int = Field(ge=1, le=65535)
    scheme: Scheme = Scheme.HTTP
    transport: AuthMethod = AuthMethod.NTLM
    tags: dict[str, str] = Field(default_factory=dict)
    group: str | None = None
    # "inventory.yaml:12", so later messages can point back at the entry.
    source: str = ""
    winrm: WinRMStack = WinRMStack.CURRENT
    # The host's Windows version ("10.0.19045") when the inventory knows it (docs/wire.md, OS facts).
    os_version: str | None = Field(default=None, pattern=OS_VERSION_PATTERN)
    # The Kerberos service principal ("HTTP/web01.corp.example.com") when it is not HTTP/<name>
    # (docs/authentication.md#spns).
    spn: str | None = Field(default=None, pattern=SPN_PATTERN)
    # Which site's collectors can reach this host (docs/sites.md#sites); every local scan has one too.
    site: str = Field(default=DEFAULT_SITE, pattern=rf"^{_SITE_NAME.pattern}$")

    @property
    def endpoint(self) -> str:
        """Return the WS-Management URL of this host."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme.value}://{host}:{self.port}/wsman"


class OsSource(StrEnum):
    """Where a host's OS facts came from (docs/wire.md, OS facts)."""

    WMI = "wmi"  # Win32_OperatingSystem, read over WS-Management
    NTLM_CHALLENGE = "ntlm_challenge"  # the VERSION field of the host's NTLM CHALLENGE (MS-NLMP 2.2.2.10)
    INVENTORY = "inventory"  # the target's os_version


class OsInfo(Frozen):
    """OS facts of a host. Caption is untrusted, localised, display only (and only WMI gives it)."""

    version: str  # "10.0.19045"; identity comes from this, never from the caption
    build: int | None = None
    service_pack: int | None = None  # only WMI gives it: None from the other sources
    caption: str | None = None
    source: OsSource = OsSource.WMI


class RegistryValue(Frozen):
    """A value as stored on the host: real name, real type, real data."""

    name: str  # the stored spelling, which may differ in case from VALUE_NAME
    type: str  # REG_DWORD, REG_SZ, REG_EXPAND_SZ, REG_BINARY, REG_MULTI_SZ, REG_QWORD, REG_TYPE_<n>
    # REG_DWORD/REG_QWORD: unsigned int; REG_SZ/REG_EXPAND_SZ: str; REG_MULTI_SZ: list[str];
    # REG_BINARY: lower-case hex string; None when the type is one StdRegProv cannot read.
    data: int | str | list[str] | None


class KeyRead(Frozen):
    """What was found at one key: whether it exists and the NAT-T value, if any."""

    key: str
    key_present: bool
    value: RegistryValue | None = None


class Stage(StrEnum):
    """Where in the collection of one host an error happened."""

    CONNECT = "connect"
    TLS = "tls"
    AUTH = "auth"
    COLLECT = "collect"
    PARSE = "parse"
    TIMEOUT = "timeout"
    SITE = "site"  # the distributed engine: no collector for the host's site, or a result refused


class Logon(StrEnum):
    """What became of the credentials a host was sent (docs/authentication.md#lockout-safety)."""

    ACCEPTED = "accepted"  # the host (and its domain controller) accepted the logon
    REJECTED = "rejected"  # the host answered the credentials with 401: a failed logon on the account


class HostError(Frozen):
    """Why a host could not be read. `reason` is a short stable code; `message` is for people."""

    stage: Stage
    reason: str
    message: str


class Observation(Frozen):
    """Raw facts about one host, or the error that prevented reading them."""

    target: Target
    requests: int = 0  # HTTP requests sent to this host, handshake included
    os: OsInfo | None = None
    keys: tuple[KeyRead, ...] = ()  # the IPsec and PolicyAgent keys, in that order, when read
    error: HostError | None = None
    # None: no credentials reached a verdict (refused, timed out, never sent); the lockout breaker
    # counts only what is set here (scanner/engine/logon.py).
    logon: Logon | None = None

    def key(self, path: str) -> KeyRead | None:
        """Return what was read at `path`, if it was read."""
        for read in self.keys:
            if read.key.lower() == path.lower():
                return read
        return None


class Credentials(Frozen):
    """An account for the hosts: a password, a client keytab or a Kerberos ticket cache.

    The password never leaves this object in any output. A keytab or a ticket cache is only for
    Kerberos (docs/authentication.md#credentials); with one of them `username` may be empty: the
    principal is then the keytab's first one, or the cache's.
    """

    username: str  # DOMAIN\user, user@realm or a local user; "" to take it from the keytab or cache
    password: SecretStr | None = None
    keytab: str | None = None  # a client keytab file: the scan's one AS exchange uses its key
    ccache: str | None = None  # a ticket cache ("FILE:/tmp/krb5cc_1000", "" for the default) holding a TGT

    def __repr__(self) -> str:
        secret = "'**********'" if self.password is not None else "None"
        return (
            f"Credentials(username={self.username!r}, password={secret}, keytab={self.keytab!r},"
            f" ccache={self.ccache!r})"
        )


class CollectOptions(Frozen):
    """Limits and TLS settings for reading one host."""

    host_timeout: float = Field(
        default=30.0, gt=0
    )  # hard wall-clock deadline per host, trickling peers included
    connect_timeout: float = Field(default=5.0, gt=0)
    max_response_bytes: int = Field(default=1024 * 1024, gt=0)  # a WMI reply for this key is a few KB
    operation_timeout: int = Field(default=20, gt=0)  # WS-Man OperationTimeout sent to the host, seconds
    ca_bundle: str | None = None  # PEM file of CAs for HTTPS; None = system store
    verify_tls: bool = True  # False only with --insecure-skip-tls-verify, logged loudly
    tls_min_version: Literal["1.0", "1.1", "1.2"] = "1.2"  # lower only for legacy listeners, logged loudly
    # --legacy-port-fallback: when a WinRM 2.0+ port refuses the connection, try the WinRM 1.1 one.
    legacy_port_fallback: bool = False
    fallback_ports: tuple[tuple[int, int], ...] = ((5985, 80), (5986, 443))
    # Read Win32_OperatingSystem even when the NTLM CHALLENGE or the inventory gives the version:
    # set when a policy reads a fact only WMI has (os.service_pack; docs/wire.md, OS facts).
    read_os_always: bool = False
    # transport negotiate: use NTLM for a host Kerberos cannot name or get a ticket for
    # (docs/authentication.md#choosing-a-transport); False (--no-ntlm-fallback) forbids it.
    ntlm_fallback: bool = True
