"""Rebuild scan targets from a report's hosts, for `remediate --apply` and `scan --only-failing`.

A report records each host's name, address and port, not how to reach it. With an inventory
(`-i`), a host is the inventory's entry of the same name (case-insensitively: the host identity),
with every field the inventory gives (scheme, transport, WinRM stack, OS version, tags); a host
the inventory no longer lists is left out, with a warning. Without one, the target is built from
the recorded fields: HTTPS when the port is 5986 or 443 (WinRM's HTTPS listeners), the WinRM 1.1
stack when it is 80 or 443, NTLM. When applying, an inventory entry whose address or port differs
from the report's is left out too: changes go only to the host the audit read
(docs/remediation.md#which-hosts).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from scanner.core.models import AuthMethod, Scheme, Target, WinRMStack
from scanner.core.results import host_identity
from scanner.inputs.inventory import Inventory
from scanner.inputs.inventory.validate import host_problem, show

HTTPS_PORTS = frozenset({5986, 443})
LEGACY_PORTS = frozenset({80, 443})


@dataclass(frozen=True)
class Recorded:
    """Where the report says a host is."""

    name: str
    address: str
    port: int


@dataclass(frozen=True)
class Rebuilt:
    """The targets rebuilt, in the report's order, and one warning per host left out."""

    targets: tuple[Target, ...]
    warnings: tuple[str, ...]


def recorded_target(host: Recorded, source: str) -> Target:
    """Return the target the recorded fields imply (the module docstring's rules)."""
    return Target(
        name=host.name,
        address=host.address,
        port=host.port,
        scheme=Scheme.HTTPS if host.port in HTTPS_PORTS else Scheme.HTTP,
        transport=AuthMethod.NTLM,
        winrm=WinRMStack.LEGACY if host.port in LEGACY_PORTS else WinRMStack.CURRENT,
        source=source,
    )


def rebuild_targets(
    hosts: Iterable[Recorded], *, source: str, inventory: Inventory | None, same_address: bool
) -> Rebuilt:
    """Return a target per host: the inventory's entry, or the recorded fields; warn for each left out.

    `same_address`: leave out an inventory entry whose address or port is not the report's.
    """
    listed = {host_identity(t.name): t for t in inventory.targets} if inventory is not None else {}
    targets: list[Target] = []
    warnings: list[str] = []
    for host in hosts:
        problem = host_problem(host.name) or host_problem(host.address)
        if problem is not None:
            warnings.append(f"{source}: host {show(host.name)} left out: its name or address {problem}")
            continue
        if not 1 <= host.port <= 65535:
            warnings.append(f"{source}: host {show(host.name)} left out: port {host.port} is not a TCP port")
            continue
        if inventory is None:
            targets.append(recorded_target(host, f"{source}:{host.name}"))
            continue
        entry = listed.get(host_identity(host.name))
        if entry is None:
            warnings.append(f"{inventory.path}: host {host.name} of the report is not in the inventory: left out")
        elif same_address and (entry.address.lower(), entry.port) != (host.address.lower(), host.port):
            warnings.append(
                f"{entry.source or inventory.path}: host {host.name} is at {entry.address}:{entry.port} in "
                f"the inventory but was read at {host.address}:{host.port}: left out (rescan first)"
            )
        else:
            targets.append(entry)
    return Rebuilt(tuple(targets), tuple(warnings))
