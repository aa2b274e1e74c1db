"""The `ansible` plan format: a playbook and an inventory limited to the hosts to change.

The playbook is the same for every estate: it holds no host text at all. Everything per host
(the key, the data, the before to re-check, the strays, whether to restart) is an inventory
variable, and every host-supplied string in the inventory is tagged `!unsafe`, so Ansible never
evaluates it as a template (a REG_SZ before of `{{ lookup('pipe', ...) }}` stays text). Host
names and addresses are also held to host_problem (a host name or an IP literal) by the plan
model, so no inventory pattern character reaches a host key.

Modules (collection ansible.windows): win_reg_stat to re-read what the audit saw, win_regedit to
set and delete, win_service to restart the IPsec Policy Agent when the value changed.
"""

from __future__ import annotations

from typing import Final

from reports.remediation.plan import DeleteValue, HostPlan, Observed, RemediationPlan, SetValue
from reports.remediation.text import header_lines
from scanner.inputs.inventory.validate import host_problem

PLAYBOOK: Final = "natt-remediate.yml"
INVENTORY: Final = "inventory.yml"
GROUP: Final = "natt_remediate"

WRAP: Final = 96  # characters of quoted text per line: ansible-lint's yamllint allows 160 per line


class Unsafe(str):
    """Host-supplied text: written with the `!unsafe` tag so Ansible never evaluates it as a template."""

    __slots__ = ()


Node = None | bool | int | str | list["Node"] | dict[str, "Node"]


def _escaped(ch: str) -> str:
    code = ord(ch)
    if ch in '"\\':
        return "\\" + ch
    if 0x20 <= code < 0x7F:
        return ch
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def yaml_quote(text: str, indent: int = 0) -> list[str]:
    """Return `text` as a YAML double-quoted scalar of printable ASCII, wrapped onto lines if long.

    Every character outside printable ASCII is an escape, so no byte of host text can end the
    scalar, start a comment or a line, or hide from a reviewer. A long scalar continues on the next
    lines after an escaped line break (which the scalar does not contain); a space at either side
    of such a break is written as an escape so no YAML parser's folding can drop it.
    """
    tokens = [_escaped(ch) for ch in text]
    lines: list[str] = []
    current = '"'
    for piece in tokens:
        if len(current) + len(piece) > WRAP:
            if current.endswith(" "):
                current = current[:-1] + "\\x20"
            lines.append(current + "\\")
            current = "\\x20" if piece == " " else ""
            if piece == " ":
                continue
        current += piece
    lines.append(current + '"')
    pad = " " * indent
    return [lines[0], *(pad + line for line in lines[1:])]


def _scalar(value: bool | int | str | None, indent: int) -> list[str]:
    if value is None:
        return ["null"]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, int):
        return [str(value)]
    quoted = yaml_quote(value, indent)
    return [("!unsafe " if isinstance(value, Unsafe) else "") + quoted[0], *quoted[1:]]


def emit(node: dict[str, Node], indent: int) -> list[str]:
    """Return a mapping as block-style YAML lines at `indent` (keys are our own identifiers)."""
    pad = " " * indent
    lines: list[str] = []
    for key, value in node.items():
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{key}:")
            lines.extend(emit(value, indent + 2))
        elif isinstance(value, list) and value:
            lines.append(f"{pad}{key}:")
            lines.extend(_items(value, indent + 2))
        elif isinstance(value, dict | list):
            lines.append(f"{pad}{key}: {'{}' if isinstance(value, dict) else '[]'}")
        else:
            first, *rest = _scalar(value, indent + 2)
            lines.append(f"{pad}{key}: {first}")
            lines.extend(rest)
    return lines


def _items(values: list[Node], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for value in values:
        if isinstance(value, dict) and value:
            first, *rest = emit(value, indent + 2)
            lines.append(f"{pad}- {first.lstrip()}")
            lines.extend(rest)
        elif isinstance(value, list) and value:
            raise ValueError("nested lists are not part of the inventory")
        elif isinstance(value, dict | list):
            lines.append(f"{pad}- {'{}' if isinstance(value, dict) else '[]'}")
        else:
            first, *rest = _scalar(value, indent + 2)
            lines.append(f"{pad}- {first}")
            lines.extend(rest)
    return lines


def _binary(hex_text: str) -> list[Node] | None:
    try:
        data = bytes.fromhex(hex_text)
    except ValueError:
        return None
    return list(data)


def state(observed: Observed | None) -> dict[str, Node]:
    """Return a before as win_reg_stat reports it: exists, type, value (REG_BINARY as its bytes)."""
    if observed is None:
        return {"exists": False}
    data = observed.data
    value: Node = None
    if isinstance(data, bool):
        value = None  # not registry data: compare existence only
    elif isinstance(data, int):
        value = data
    elif isinstance(data, list):
        value = [Unsafe(item) for item in data]
    elif isinstance(data, str) and observed.type == "REG_BINARY":
        value = _binary(data)
    elif isinstance(data, str):
        value = Unsafe(data)
    if value is None:  # data StdRegProv could not read (REG_TYPE_<n>): existence only
        return {"exists": True}
    return {"exists": True, "type": Unsafe(observed.type), "value": value}


def host_vars(host: HostPlan) -> dict[str, Node]:
    """Return the inventory variables of one planned host."""
    set_value = host.set_value
    checks: list[Node] = []
    for action in host.actions:
        if isinstance(action, SetValue):
            after: dict[str, Node] = {"exists": True, "type": "REG_DWORD", "value": action.after.data}
            checks.append({"key": action.key.value, "before": state(action.before), "after": after})
        elif isinstance(action, DeleteValue):
            checks.append({"key": action.key.value, "before": state(action.before), "after": {"exists": False}})
    return {
        "ansible_host": Unsafe(host.address),
        "ansible_port": host.port,
        "natt_rules": list[Node](host.rules),
        "natt_set": None if set_value is None else {"key": set_value.key.value, "data": set_value.after.data},
        "natt_delete": [{"key": d.key.value} for d in host.deletes],
        "natt_checks": checks,
        "natt_restart": host.restart,
    }


def inventory_name(name: str) -> str:
    """Return a host name as an inventory key; refuse one Ansible would read as a pattern or range."""
    # The plan model already holds names to host names and IP literals; a plan built around it
    # (model_construct) must still not turn `web[1:9]` or `a,b` into other hosts of the inventory.
    problem = host_problem(name)
    if problem is not None:
        raise ValueError(f"{name!a} {problem}: not an inventory host name")
    return yaml_quote(name)[0]


def render_inventory(plan: RemediationPlan) -> str:
    """Return the inventory: one group, the planned hosts, their natt_* variables."""
    lines = ["---", *(f"# {line}" for line in header_lines(plan))]
    lines += [
        "# The hosts to change and nothing else. Host-supplied text is tagged !unsafe: never templated.",
        "# Credentials are not here: give them at run time (ansible_user/ansible_password, vault, -u/-k).",
        "# ansible_winrm_scheme follows Ansible's default (https unless the port is 5985): set it if needed.",
        "all:",
        "  children:",
        f"    {GROUP}:",
        "      vars:",
        "        ansible_connection: winrm",
        "      hosts:" + ("" if plan.hosts else " {}"),
    ]
    for host in plan.hosts:
        lines.append(f"        {inventory_name(host.name)}:")
        lines.extend(emit(host_vars(host), 10))
    return "\n".join(lines) + "\n"


_MATCH = """\
            (item.exists == natt_{which}.exists
             and (natt_{which}.type is undefined or item.type == natt_{which}.type)
             and (natt_{which}.value is undefined or item.value == natt_{which}.value))"""


def render_playbook(plan: RemediationPlan) -> str:
    """Return the playbook: re-check the before, set, delete strays, restart the Policy Agent on change."""
    head = [f"# {line}" for line in header_lines(plan)]
    body = f"""\
# Review first, then apply (the inventory is written next to this file):
#   ansible-playbook -i {INVENTORY} {PLAYBOOK} --check --diff
#   ansible-playbook -i {INVENTORY} {PLAYBOOK}
# Per host: re-read every value the plan changes and stop that host if one is neither what the
# audit saw nor what the plan sets; set the value at the key that applies to its OS; delete the
# stray values; restart the IPsec Policy Agent when the value changed, since it reads the value
# when it starts (KB 885407).
- name: Remediate AssumeUDPEncapsulationContextOnSendRule (natt-audit plan)
  hosts: {GROUP}
  gather_facts: false
  tasks:
    - name: Read the values the plan changes
      ansible.windows.win_reg_stat:
        path: 'HKLM:\\{{{{ item.key }}}}'
        name: AssumeUDPEncapsulationContextOnSendRule
      loop: "{{{{ natt_checks }}}}"
      loop_control:
        label: "{{{{ item.key }}}}"
      register: natt_now

    - name: Stop a host whose value is neither what the audit saw nor what the plan sets
      ansible.builtin.assert:
        that:
          - >-
{_MATCH.format(which="was")}
            or
{_MATCH.format(which="will")}
        fail_msg: The value changed since the audit; this host is left unchanged
        quiet: true
      vars:
        natt_was: "{{{{ item.item.before }}}}"
        natt_will: "{{{{ item.item.after }}}}"
      loop: "{{{{ natt_now.results }}}}"
      loop_control:
        label: "{{{{ item.item.key }}}}"

    - name: Set the value at the key that applies to the OS
      ansible.windows.win_regedit:
        path: 'HKLM:\\{{{{ natt_set.key }}}}'
        name: AssumeUDPEncapsulationContextOnSendRule
        data: "{{{{ natt_set.data }}}}"
        type: dword
        state: present
      when: natt_set is not none
      notify: Restart the IPsec Policy Agent

    - name: Delete the values at the key the OS ignores
      ansible.windows.win_regedit:
        path: 'HKLM:\\{{{{ item.key }}}}'
        name: AssumeUDPEncapsulationContextOnSendRule
        state: absent
      loop: "{{{{ natt_delete }}}}"
      loop_control:
        label: "{{{{ item.key }}}}"

  handlers:
    - name: Restart the IPsec Policy Agent
      ansible.windows.win_service:
        name: PolicyAgent
        state: restarted
      when: natt_restart | bool
"""
    return "\n".join(["---", *head, body]).rstrip("\n") + "\n"


def write(plan: RemediationPlan) -> dict[str, bytes]:
    """Return the files of this format: the playbook and its inventory."""
    return {
        PLAYBOOK: render_playbook(plan).encode("ascii"),
        INVENTORY: render_inventory(plan).encode("ascii"),
    }

