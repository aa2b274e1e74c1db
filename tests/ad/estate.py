"""LDIF for a directory of computer accounts in nested OUs, and what the ldap source must make of it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from scanner.inputs.sources.ldap import filetime

ROOT_OU = "OU=Sites,DC=lab,DC=test"
TIER0 = f"CN=Tier0 Servers,{ROOT_OU}"
ESCAPED_OU = f"OU=R&D\\, Lab/2,OU=Tokyo,{ROOT_OU}"  # RFC 4514: the comma in the name is escaped
ENABLED, DISABLED = 4096, 4098  # WORKSTATION_TRUST_ACCOUNT, + ACCOUNTDISABLE (MS-ADTS 2.2.16)


@dataclass(frozen=True)
class Computer:
    """One computer object as written to the directory."""

    cn: str
    ou: str
    dns: str | None
    os: str | None
    version: str | None
    uac: int = ENABLED
    logon_days_ago: int | None = 1

    @property
    def dn(self) -> str:
        """Return the object's DN."""
        return f"CN={self.cn},{self.ou}"


def estate(servers: int = 600, workstations: int = 400, floor2: int = 100, tokyo: int = 100) -> list[Computer]:
    """Return the computers: every 50th server disabled, every 40th workstation stale, and six odd ones."""
    paris = f"OU=Paris,{ROOT_OU}"
    items: list[Computer] = []
    for i in range(servers):
        uac = DISABLED if i % 50 == 49 else ENABLED
        items.append(
            Computer(f"SRV{i:04d}", f"OU=Servers,{paris}", f"srv{i:04d}.lab.test",
                     "Windows Server 2019 Standard", "10.0 (17763)", uac)
        )  # fmt: skip
    for i in range(workstations):
        age = 400 if i % 40 == 39 else 1
        items.append(
            Computer(f"WS{i:04d}", f"OU=Workstations,{paris}", f"ws{i:04d}.lab.test",
                     "Windows 10 Enterprise", "10.0 (19045)", logon_days_ago=age)
        )  # fmt: skip
    for i in range(floor2):
        items.append(
            Computer(f"WSF{i:04d}", f"OU=Floor 2,OU=Workstations,{paris}", f"wsf{i:04d}.lab.test",
                     "Windows 7 Professional", "6.1 (7601)")
        )  # fmt: skip
    for i in range(tokyo):
        items.append(
            Computer(f"TYO{i:04d}", f"OU=Tokyo,{ROOT_OU}", f"tyo{i:04d}.lab.test", "Windows Server 2003", "5.2 (3790)")
        )
    tokyo_ou = f"OU=Tokyo,{ROOT_OU}"
    items += [
        Computer("NODNS", tokyo_ou, None, "Windows 10 Pro", "10.0 (19045)"),
        Computer("SAMBA", tokyo_ou, "samba.lab.test", "Samba", "4.17.12-Debian"),  # garbled for Windows
        Computer("NOOS", tokyo_ou, "noos.lab.test", None, None),
        Computer("NEVER", tokyo_ou, "never.lab.test", "Windows 11 Pro", "10.0 (22631)", logon_days_ago=None),
        Computer("BADNAME", tokyo_ou, "bad_name.lab.test", "Windows 10 Pro", "10.0 (19045)"),
        Computer("RND", ESCAPED_OU, "rnd.lab.test", "Windows Server 2022 Standard", "10.0 (20348)"),
    ]
    return items


def ldif(computers: list[Computer], now: dt.datetime, tier0: int = 10) -> str:
    """Return LDIF for the OUs, the computers and a Tier0 group holding the first `tier0` servers."""
    ous = sorted({c.ou for c in computers} | {ROOT_OU, f"OU=Paris,{ROOT_OU}", f"OU=Tokyo,{ROOT_OU}"}, key=len)
    records = [f"dn: {ou}\nobjectClass: organizationalUnit\n" for ou in ous]
    for c in computers:
        lines = [f"dn: {c.dn}", "objectClass: computer", f"sAMAccountName: {c.cn}$", f"userAccountControl: {c.uac}"]
        if c.dns is not None:
            lines.append(f"dNSHostName: {c.dns}")
        if c.os is not None:
            lines.append(f"operatingSystem: {c.os}")
        if c.version is not None:
            lines.append(f"operatingSystemVersion: {c.version}")
        if c.logon_days_ago is not None:
            lines.append(f"lastLogonTimestamp: {filetime(now - dt.timedelta(days=c.logon_days_ago))}")
        records.append("\n".join(lines) + "\n")
    servers = [c for c in computers if c.cn.startswith("SRV")][:tier0]
    group = [f"dn: {TIER0}", "objectClass: group", "sAMAccountName: tier0-servers"]
    group += [f"member: {c.dn}" for c in servers]
    records.append("\n".join(group) + "\n")
    return "\n".join(records)
