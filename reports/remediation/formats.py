"""The plan formats: one enum drives `remediate -f`, the output folders and the writer table."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from reports.remediation import ansible, gpo, json_plan, powershell, reg
from reports.remediation.plan import RemediationPlan


class PlanFormat(StrEnum):
    """Formats of `natt-audit remediate -f`. Each has one module under reports/remediation/."""

    ANSIBLE = "ansible"  # reports/remediation/ansible.py: playbook + inventory of the hosts to change
    GPO = "gpo"  # reports/remediation/gpo.py: Group Policy Preferences Registry.xml
    POWERSHELL = "powershell"  # reports/remediation/powershell.py: one script, -ComputerName, -WhatIf
    REG = "reg"  # reports/remediation/reg.py: regedit files, one per distinct change set
    JSON = "json"  # reports/remediation/json_plan.py: the plan itself (`natt-audit schema remediation`)


# A writer returns the format's files: name (relative to the format's folder) -> bytes. Pure.
Writer = Callable[[RemediationPlan], dict[str, bytes]]

WRITERS: dict[PlanFormat, Writer] = {
    PlanFormat.ANSIBLE: ansible.write,
    PlanFormat.GPO: gpo.write,
    PlanFormat.POWERSHELL: powershell.write,
    PlanFormat.REG: reg.write,
    PlanFormat.JSON: json_plan.write,
}


def plan_files(plan: RemediationPlan, fmt: PlanFormat) -> dict[str, bytes]:
    """Return the files of `plan` in `fmt`, keyed by path relative to the output folder (`<fmt>/<name>`)."""
    return {f"{fmt.value}/{name}": data for name, data in WRITERS[fmt](plan).items()}
