"""The `reg` plan format: regedit files, one per distinct change set, as regedit itself writes them.

Hosts that need the same registry changes (say: REG_DWORD 0 at Services\\PolicyAgent and the
stray deleted from Services\\IPsec) share one file, named after its change set. The file is what
regedit's export writes: the `Windows Registry Editor Version 5.00` header, UTF-16 LE with a
byte-order mark, CRLF line ends, `"Name"=dword:00000000` to set a DWORD and `"Name"=-` to delete
a value. Its comments (`;` lines) list the hosts it is for, with the before the audit saw on each.

A .reg file can neither check the before nor restart a service: import it only on the hosts it
lists, then restart the IPsec Policy Agent where the value was set (it reads the value when it
starts, KB 885407), as every file's comments say.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Final

from reports.remediation.plan import HIVE, DeleteValue, HostPlan, RemediationPlan, SetValue
from reports.remediation.text import comment_text, header_lines, shown

HEADER: Final = "Windows Registry Editor Version 5.00"
BOM: Final = b"\xff\xfe"


def reg_quote(text: str) -> str:
    """Return a value name as regedit quotes it: within double quotes, backslash and quote escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def file_name(host: HostPlan) -> str:
    """Return the .reg file a host's changes go to, named after its change set (ASCII, no host text)."""
    return f"{host.change_set}.reg"


def _host_comment(host: HostPlan) -> list[str]:
    lines = [f"; {comment_text(host.name, 100)} ({comment_text(host.address, 60)}), fixes {', '.join(host.rules)}"]
    for action in host.actions:
        if isinstance(action, SetValue):
            lines.append(f";   {action.key.short}: audit saw {shown(action.before)}; set REG_DWORD {action.after.data}")
        elif isinstance(action, DeleteValue):
            lines.append(f";   {action.key.short}: audit saw {shown(action.before)}; delete (the OS ignores this key)")
    if host.restart:
        lines.append(";   then restart the IPsec Policy Agent: Restart-Service PolicyAgent (KB 885407)")
    return lines


def render_set(hosts: list[HostPlan], plan: RemediationPlan) -> str:
    """Return one .reg file (as text, LF line ends) for hosts that share a change set."""
    first = hosts[0]
    lines = [HEADER, "", *(f"; {line}" for line in header_lines(plan))]
    lines += [
        f"; change set {first.change_set}: import on these hosts only, after checking each still holds",
        "; what the audit saw (a .reg file cannot check it):",
    ]
    for host in hosts:
        lines.extend(_host_comment(host))
    for action in first.actions:
        if isinstance(action, SetValue):
            lines += ["", f"[{HIVE}\\{action.key.value}]", f"{reg_quote(action.name)}=dword:{action.after.data:08x}"]
        elif isinstance(action, DeleteValue):
            lines += ["", f"[{HIVE}\\{action.key.value}]", f"{reg_quote(action.name)}=-"]
    return "\n".join(lines) + "\n\n"


def encode(text: str) -> bytes:
    """Return text as regedit writes a file: UTF-16 LE with a byte-order mark, CRLF line ends."""
    return BOM + text.replace("\n", "\r\n").encode("utf-16-le")


def write(plan: RemediationPlan) -> dict[str, bytes]:
    """Return the files of this format: one .reg file per distinct change set."""
    groups: dict[str, list[HostPlan]] = defaultdict(list)
    for host in plan.hosts:
        groups[file_name(host)].append(host)
    return {name: encode(render_set(hosts, plan)) for name, hosts in sorted(groups.items())}
