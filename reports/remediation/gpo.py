"""The `gpo` plan format: a Group Policy Preferences Registry.xml, one item per change per host.

The structure is the Registry extension of [MS-GPPREF] (Group Policy: Preferences Extension Data
Structure): a `RegistrySettings` root, `Registry` items with a `Properties` element (section
2.2.1.17.1: action C/R/U/D, hive, key, name, type, value) and item-level targeting with a
`Filters/FilterComputer` element (section 2.2.1.22: name, type NETBIOS or DNS, bool, not). Import
it into a GPO as Computer Configuration > Preferences > Windows Settings > Registry (it is the
file GPMC keeps at Machine/Preferences/Registry/Registry.xml in the GPO's SYSVOL folder).

A preference item cannot restart a service: the Policy Agent reads the value when it starts
(KB 885407), so a change deployed this way takes effect at the next restart of the service or of
the computer. Every item says so in its description.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
import xml.etree.ElementTree as ET
from typing import Final

from reports.remediation.plan import HIVE, DeleteValue, HostPlan, RemediationPlan, SetValue
from reports.remediation.text import comment_text, header_lines, shown
from scanner.core.results import NAMESPACE, host_identity

FILE: Final = "Registry.xml"
SETTINGS_CLSID: Final = "{A3CCFC41-DFDB-43a5-8D26-0FE8B954DA51}"  # RegistrySettings
REGISTRY_CLSID: Final = "{9CD4B2F4-923D-47f5-A062-E897DD1DAD50}"  # Registry item
# GPMC's icon per item (cosmetic): a REG_DWORD value updated, a value deleted.
IMAGE: Final = {"U": "12", "D": "8"}
NETBIOS_MAX: Final = 15  # a NetBIOS computer name has at most 15 characters
# FilterComputer's name accepts wildcards (* ?) and preference variables (%...%) (GPMC help,
# "Computer Name Targeting"): a name must hold none of them, or it could match other computers.
_TARGET_NAME: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.:-]*[A-Za-z0-9.])?\Z")


def target_filter(name: str) -> tuple[str, str]:
    """Return (type, name) of the FilterComputer that matches exactly this host, NETBIOS or DNS."""
    if not _TARGET_NAME.match(name):
        raise ValueError(f"{name!a} cannot be targeted exactly by a computer-name filter")
    if "." in name or ":" in name or len(name) > NETBIOS_MAX:
        return "DNS", name.rstrip(".")  # an FQDN or an IP literal: matched by resolution
    return "NETBIOS", name.upper()


def _changed(finished_at: str) -> str:
    try:
        when = dt.datetime.fromisoformat(finished_at)
    except ValueError:
        when = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S")


def _uid(host: HostPlan, action: str, key: str) -> str:
    return "{" + str(uuid.uuid5(NAMESPACE, f"gpp|{host_identity(host.name)}|{action}|{key}")).upper() + "}"


def _item(host: HostPlan, action: SetValue | DeleteValue, changed: str) -> ET.Element:
    code = "U" if isinstance(action, SetValue) else "D"
    rules = ", ".join(host.rules)
    if isinstance(action, SetValue):
        desc = (
            f"natt-audit {rules} on {host.name}: audit saw {shown(action.before)}; sets REG_DWORD "
            f"{action.after.data}. Takes effect when the IPsec Policy Agent restarts (KB 885407)."
        )
    else:
        desc = (
            f"natt-audit {rules} on {host.name}: audit saw {shown(action.before)} at a key the OS "
            "ignores; deletes it."
        )
    item = ET.Element(
        "Registry",
        {
            "clsid": REGISTRY_CLSID,
            "name": action.name,
            "status": action.name,
            "image": IMAGE[code],
            "changed": changed,
            "uid": _uid(host, code, action.key.value),
            "desc": comment_text(desc, limit=1000),
        },
    )
    ET.SubElement(
        item,
        "Properties",
        {
            "action": code,
            "displayDecimal": "1",
            "default": "0",
            "hive": HIVE,
            "key": action.key.value,
            "name": action.name,
            # A Delete item's type and value are not used (MS-GPPREF 2.2.1.17.1); GPMC writes these.
            "type": "REG_DWORD" if isinstance(action, SetValue) else "REG_SZ",
            "value": f"{action.after.data:08X}" if isinstance(action, SetValue) else "",
        },
    )
    filters = ET.SubElement(item, "Filters")
    kind, name = target_filter(host.name)
    ET.SubElement(filters, "FilterComputer", {"bool": "AND", "not": "0", "type": kind, "name": name})
    return item


def render(plan: RemediationPlan) -> str:
    """Return Registry.xml: every planned set and delete, each targeted at its one computer."""
    root = ET.Element("RegistrySettings", {"clsid": SETTINGS_CLSID})
    changed = _changed(plan.source.finished_at)
    for host in plan.hosts:
        for action in host.actions:
            if isinstance(action, SetValue | DeleteValue):
                root.append(_item(host, action, changed))
    ET.indent(root, space="  ")
    notes = [
        *header_lines(plan),
        "A preference item cannot restart a service: the IPsec Policy Agent reads the value when it",
        "starts (KB 885407), so each change takes effect at its next restart or the computer's.",
    ]
    # '--' cannot occur inside an XML comment; comment_text has already made the text printable ASCII.
    comment = "\n".join("  " + re.sub("-(?=-)", "- ", line) for line in notes)
    body = ET.tostring(root, encoding="unicode", short_empty_elements=True)
    return f'<?xml version="1.0" encoding="utf-8"?>\n<!--\n{comment}\n-->\n{body}\n'


def write(plan: RemediationPlan) -> dict[str, bytes]:
    """Return the files of this format: Registry.xml (UTF-8, as GPMC writes it)."""
    return {FILE: render(plan).encode("utf-8")}
