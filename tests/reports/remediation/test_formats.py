"""Every plan format: golden files, and each file checked by its real consumer where there is one.

ansible: `ansible-playbook --syntax-check` and `ansible-lint` (default rules and the production
profile) with the ansible.windows collection from the `ansible` package; task arguments checked
against the modules' documented options (`ansible-doc -j`); the inventory run through Ansible to
show that host text is never templated. gpo: an XML parser and the MS-GPPREF structure. reg: the
parser in regparse.py. powershell: no PowerShell here, so the plan data is evaluated by the
quoting rules of the language (psparse.py) and the script checked for its parameters.

Regenerate the golden files after an intended change with UPDATE_GOLDENS=1 and review the diff.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from reports.remediation import ansible, gpo, powershell, reg
from reports.remediation.formats import WRITERS, PlanFormat, plan_files
from reports.remediation.plan import DeleteValue, RemediationPlan, SetValue
from scanner.core.models import IPSEC_KEY, POLICYAGENT_KEY, VALUE_NAME
from tests.reports.remediation.psparse import evaluate, scan
from tests.reports.remediation.regparse import Entry, parse_reg
from tests.reports.remediation.sample import GOLDEN_DIR, HOSTILE_MULTI, HOSTILE_SZ, make_plan

WIN_MODULES = ("ansible.windows.win_reg_stat", "ansible.windows.win_regedit", "ansible.windows.win_service")


@pytest.fixture(scope="module")
def plan() -> RemediationPlan:
    return make_plan()


@pytest.fixture(scope="module")
def empty_plan(plan: RemediationPlan) -> RemediationPlan:
    return plan.model_copy(update={"hosts": [], "skipped": []})


def test_every_format_has_a_writer_and_golden_files(plan: RemediationPlan) -> None:
    assert set(WRITERS) == set(PlanFormat)
    assert [f.value for f in PlanFormat] == ["ansible", "gpo", "powershell", "reg", "json"]
    for fmt in PlanFormat:
        written = set(plan_files(plan, fmt))
        on_disk = {str(p.relative_to(GOLDEN_DIR)) for p in (GOLDEN_DIR / fmt.value).glob("*")}
        assert written == on_disk or not on_disk, fmt  # an empty folder: UPDATE_GOLDENS=1 writes it


@pytest.mark.parametrize("fmt", list(PlanFormat))
def test_files_match_their_goldens(fmt: PlanFormat, plan: RemediationPlan, update_goldens: bool) -> None:
    files = plan_files(plan, fmt)
    assert files == plan_files(plan, fmt)  # pure: same plan, same bytes
    for name, data in files.items():
        path = GOLDEN_DIR / name
        if update_goldens:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        assert path.is_file(), f"missing golden {path}; UPDATE_GOLDENS=1 writes it"
        assert data == path.read_bytes(), f"{name} differs from its golden file; UPDATE_GOLDENS=1 rewrites it"


@pytest.mark.parametrize("fmt", list(PlanFormat))
def test_an_empty_plan_still_writes_valid_files(fmt: PlanFormat, empty_plan: RemediationPlan) -> None:
    files = plan_files(empty_plan, fmt)
    if fmt is PlanFormat.REG:
        assert files == {}  # no change set, no file
    else:
        assert files


# ---------------------------------------------------------------------------------------------
# ansible


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (the test extra installs ansible and ansible-lint)")
    return path


def _ansible_dir(tmp_path: Path, plan: RemediationPlan) -> Path:
    for name, data in ansible.write(plan).items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


def _run(argv: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "ANSIBLE_LOCAL_TEMP": str(cwd / ".tmp"), "NO_COLOR": "1"}
    env["PATH"] = str(Path(argv[0]).parent) + ":" + env["PATH"]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False)


@pytest.mark.parametrize("which", ["plan", "empty"])
def test_the_playbook_passes_syntax_check(
    tmp_path: Path, plan: RemediationPlan, empty_plan: RemediationPlan, which: str
) -> None:
    folder = _ansible_dir(tmp_path, plan if which == "plan" else empty_plan)
    done = _run([_tool("ansible-playbook"), "-i", ansible.INVENTORY, ansible.PLAYBOOK, "--syntax-check"], folder)
    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
    if which == "empty":  # an empty plan is an empty group: Ansible says so, and that is all it says
        warnings = [line for line in warnings if "provided hosts list is empty" not in line]
    assert warnings == []


@pytest.mark.parametrize("profile", [None, "production"])
def test_the_playbook_and_inventory_pass_ansible_lint(
    tmp_path: Path, plan: RemediationPlan, profile: str | None
) -> None:
    folder = _ansible_dir(tmp_path, plan)
    argv = [_tool("ansible-lint"), "--offline", "--nocolor", *(["--profile", profile] if profile else [])]
    done = _run([*argv, ansible.PLAYBOOK, ansible.INVENTORY], folder, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 failure(s), 0 warning(s) in 2 files" in done.stdout + done.stderr


def _module_specs() -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [_tool("ansible-doc"), "-j", *WIN_MODULES, "ansible.builtin.assert"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    return {name: entry["doc"]["options"] for name, entry in json.loads(done.stdout).items()}


def test_task_arguments_match_the_module_argument_specs(plan: RemediationPlan) -> None:
    specs = _module_specs()
    assert set(WIN_MODULES) <= set(specs)  # the collection resolves, offline
    play = yaml.safe_load(ansible.render_playbook(plan))[0]
    tasks = play["tasks"] + play["handlers"]
    used = set()
    for task in tasks:
        [module] = [key for key in task if "." in key]
        used.add(module)
        options = specs[module]
        names = {n: n for n in options} | {a: n for n, o in options.items() for a in o.get("aliases") or []}
        args = task[module]
        assert set(args) <= set(names), (module, set(args) - set(names))
        for key, value in args.items():
            choices = options[names[key]].get("choices")
            if choices and "{{" not in str(value):
                assert value in choices, (module, key, value)
        required = {n for n, o in options.items() if o.get("required")}
        assert required <= {names[k] for k in args}, (module, required)
    assert used == {*WIN_MODULES, "ansible.builtin.assert"}


class _UnsafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus Ansible's !unsafe tag, which must mark only host-supplied text."""


_UnsafeLoader.add_constructor("!unsafe", lambda loader, node: ("UNSAFE", loader.construct_scalar(node)))


def test_the_inventory_holds_only_the_planned_hosts_and_tags_host_text(plan: RemediationPlan) -> None:
    inventory = yaml.load(ansible.render_inventory(plan), Loader=_UnsafeLoader)
    hosts = inventory["all"]["children"][ansible.GROUP]["hosts"]
    assert list(hosts) == [h.name for h in plan.hosts]
    multi = hosts["w10-multi"]["natt_checks"][0]["before"]
    tagged = [("UNSAFE", v) for v in HOSTILE_MULTI]
    assert multi == {"exists": True, "type": ("UNSAFE", "REG_MULTI_SZ"), "value": tagged}
    stray = hosts["w2003-sz"]["natt_checks"][1]
    assert stray == {
        "key": POLICYAGENT_KEY,
        "before": {"exists": True, "type": ("UNSAFE", "REG_SZ"), "value": ("UNSAFE", HOSTILE_SZ)},
        "after": {"exists": False},
    }
    assert hosts["w10-binary"]["natt_checks"][0]["before"]["value"] == [2, 0, 0, 0]  # win_reg_stat's bytes
    assert hosts["w2003-sz"]["natt_set"] == {"key": IPSEC_KEY, "data": 0}
    assert hosts["xp-sp3-stray"]["natt_set"] is None and hosts["xp-sp3-stray"]["natt_restart"] is False


PROBE = """\
---
- name: Show what the inventory holds
  hosts: natt_remediate
  gather_facts: false
  tasks:
    - name: Show the checks
      ansible.builtin.debug:
        msg: "{{ natt_checks | to_json }}"
"""


def test_ansible_never_templates_host_text(tmp_path: Path, plan: RemediationPlan) -> None:
    marker = tmp_path / "pwned"
    hostile = ["{{ lookup('pipe', 'touch " + str(marker) + "') }}"]
    folder = _ansible_dir(tmp_path, plan)
    inventory = (folder / ansible.INVENTORY).read_text(encoding="ascii").replace(
        "touch /tmp/natt-pwned", f"touch {marker}"
    )
    (folder / ansible.INVENTORY).write_text(inventory, encoding="ascii")
    (folder / "probe.yml").write_text(PROBE, encoding="ascii")
    argv = [_tool("ansible-playbook"), "-i", ansible.INVENTORY, "probe.yml", "-e", "ansible_connection=local"]
    done = _run([*argv, "-l", "w10-multi"], folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not marker.exists()
    assert json.dumps(hostile[0])[1:-1].replace('"', '\\"') in done.stdout  # shown as text
    # The control: the same inventory without the tags runs the lookup, so the test can fail.
    (folder / "bare.yml").write_text(inventory.replace("!unsafe ", ""), encoding="ascii")
    done = _run([argv[0], "-i", "bare.yml", "probe.yml", "-e", "ansible_connection=local", "-l", "w10-multi"], folder)
    assert marker.exists(), done.stdout + done.stderr


# ---------------------------------------------------------------------------------------------
# gpo

GPP_ITEM_ATTRS = ["clsid", "name", "status", "image", "changed", "uid", "desc"]
GPP_PROPERTIES_ATTRS = ["action", "displayDecimal", "default", "hive", "key", "name", "type", "value"]


def test_the_registry_xml_has_the_gpp_structure(plan: RemediationPlan) -> None:
    root = ET.fromstring(gpo.write(plan)[gpo.FILE])
    assert (root.tag, root.attrib) == ("RegistrySettings", {"clsid": "{A3CCFC41-DFDB-43a5-8D26-0FE8B954DA51}"})
    expected = [
        (host.name, action)
        for host in plan.hosts
        for action in host.actions
        if isinstance(action, SetValue | DeleteValue)
    ]
    assert len(root) == len(expected)
    uids = set()
    for item, (host, action) in zip(root, expected, strict=True):
        assert item.tag == "Registry"
        assert list(item.attrib) == GPP_ITEM_ATTRS
        assert item.get("clsid") == "{9CD4B2F4-923D-47f5-A062-E897DD1DAD50}"
        assert item.get("name") == item.get("status") == VALUE_NAME
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", item.get("changed", ""))
        assert re.fullmatch(r"\{[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}\}", item.get("uid", ""))
        uids.add(item.get("uid"))
        assert item.get("desc", "").isascii() and host in item.get("desc", "")
        properties, filters = list(item)
        assert properties.tag == "Properties" and list(properties.attrib) == GPP_PROPERTIES_ATTRS
        assert properties.get("hive") == "HKEY_LOCAL_MACHINE"
        assert properties.get("key") == action.key.value
        assert properties.get("name") == VALUE_NAME
        if isinstance(action, SetValue):
            assert (properties.get("action"), properties.get("type")) == ("U", "REG_DWORD")
            assert properties.get("value") == f"{action.after.data:08X}"
        else:
            assert properties.get("action") == "D"
        assert filters.tag == "Filters"
        [target] = list(filters)
        assert target.tag == "FilterComputer"
        kind, name = gpo.target_filter(host)
        assert target.attrib == {"bool": "AND", "not": "0", "type": kind, "name": name}
        assert name.lower() == host  # this host only: no wildcard, no variable
    assert len(uids) == len(expected)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ws-0001", ("NETBIOS", "WS-0001")),
        ("vpn01.corp.example", ("DNS", "vpn01.corp.example")),
        ("192.0.2.7", ("DNS", "192.0.2.7")),
        ("2001:db8::7", ("DNS", "2001:db8::7")),
        ("a-name-longer-than-15", ("DNS", "a-name-longer-than-15")),
    ],
)
def test_a_computer_filter_matches_one_host(name: str, expected: tuple[str, str]) -> None:
    assert gpo.target_filter(name) == expected


@pytest.mark.parametrize("name", ["WS-*", "ws-0?", "%COMPUTERNAME%", "", "a b", 'x"y'])
def test_a_name_a_filter_would_widen_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="cannot be targeted"):
        gpo.target_filter(name)


def test_a_hostile_host_name_cannot_reach_the_xml(plan: RemediationPlan) -> None:
    # The model refuses such a name; a plan built around the model must still not write it.
    host = plan.hosts[0]
    forged = host.model_construct(**{**dict(host), "name": 'x"/><Registry clsid="evil'})
    with pytest.raises(ValueError, match="cannot be targeted"):
        gpo.render(plan.model_copy(update={"hosts": [forged]}))


# ---------------------------------------------------------------------------------------------
# powershell


def _script(plan: RemediationPlan) -> str:
    raw = powershell.write(plan)[powershell.FILE]
    assert raw.startswith(b"\xef\xbb\xbf")  # Windows PowerShell reads a BOM-less file as ANSI
    text = raw[3:].decode("utf-8")
    assert "\n" not in text.replace("\r\n", "")
    assert text.isascii()  # every other character is spliced in by code
    return text.replace("\r\n", "\n")


def _plan_block(script: str) -> str:
    return script.split("$Plan = @(\n", 1)[1].split("\n)\n", 1)[0]


def test_the_script_takes_computer_name_and_supports_whatif(plan: RemediationPlan) -> None:
    script = _script(plan)
    assert "[CmdletBinding(SupportsShouldProcess)]\nparam(\n    [string[]] $ComputerName," in script
    assert script.count("$PSCmdlet.ShouldProcess(") == 3  # set, delete, restart: nothing changes without it
    assert script.count("Invoke-Command @remote -ScriptBlock $SetDword") == 1
    reads = script.index("-ScriptBlock $ReadValue")
    assert reads < script.index("-ScriptBlock $SetDword") < script.index("-ScriptBlock $RestartAgent")
    assert "Restart-Service -Name PolicyAgent" in script


_STRING_EXPR = r"(\((?:[^()']|'(?:[^']|'')*')*\)|'(?:[^']|'')*')"


def test_the_plan_data_evaluates_to_exactly_the_host_text(plan: RemediationPlan) -> None:
    block = _plan_block(_script(plan))
    names = [evaluate(m) for m in re.findall(r"Name    = " + _STRING_EXPR, block)]
    assert names == [h.name for h in plan.hosts]
    befores = re.findall(r"Type = ('REG_[A-Z_]+'); Data = (" + _STRING_EXPR[1:], block)
    data = {evaluate(expr) for _, expr, *_ in befores if not expr.startswith("@(")}
    assert HOSTILE_SZ in data and "2" in data
    [multi] = [line for line in block.splitlines() if "'REG_MULTI_SZ'" in line]
    items = re.findall(_STRING_EXPR, multi.split("Data = @(", 1)[1])
    assert [evaluate(i) for i in items] == HOSTILE_MULTI


_PLAN_TOKEN = re.compile(
    r"\s+|\[uint64\]\d+|\d+|\$(?:true|false|null)\b|@\{|@\(|\}|\)|,|;|="
    r"|(?:Name|Address|Rules|Set|Delete|Restart|Key|Data|Before|Present|Type)\b"
)
_STRING_START = re.compile(r"['\u2018-\u201b]|\[string\]|\((?=['\u2018-\u201b]|\[string\])")


def test_every_plan_line_is_data(plan: RemediationPlan) -> None:
    # Read as PowerShell would: string expressions by the language's quoting rules, and what is left
    # must be hashtables, arrays, numbers and booleans: no command, variable or operator that a
    # host's text could have smuggled in by ending a literal early.
    strings = []
    for line in _plan_block(_script(plan)).splitlines():
        at = 0
        while at < len(line):
            if _STRING_START.match(line, at):
                value, at = scan(line, at)
                strings.append(value)
                continue
            token = _PLAN_TOKEN.match(line, at)
            assert token is not None and token.end() > at, (line, line[at:])
            at = token.end()
    assert HOSTILE_SZ in strings and set(HOSTILE_MULTI) <= set(strings)


# ---------------------------------------------------------------------------------------------
# reg


def test_reg_files_parse_back_to_their_change_sets(plan: RemediationPlan) -> None:
    files = reg.write(plan)
    assert sorted(files) == sorted({f"{h.change_set}.reg" for h in plan.hosts})
    for name, raw in files.items():
        hosts = [h for h in plan.hosts if f"{h.change_set}.reg" == name]
        comments, entries = parse_reg(raw)
        expected = []
        for action in hosts[0].actions:
            if isinstance(action, SetValue):
                expected.append(Entry("HKEY_LOCAL_MACHINE", action.key.value, VALUE_NAME, "dword", action.after.data))
            elif isinstance(action, DeleteValue):
                expected.append(Entry("HKEY_LOCAL_MACHINE", action.key.value, VALUE_NAME, "delete", None))
        assert entries == expected, name  # the hostile REG_SZ before added no line
        for host in hosts:
            assert any(c.startswith(f"; {host.name} (") for c in comments)
        if hosts[0].restart:
            assert any("Restart-Service PolicyAgent" in c for c in comments)


def test_a_hostile_before_stays_in_its_comment(plan: RemediationPlan) -> None:
    raw = reg.write(plan)["set-IPsec-0.delete-PolicyAgent.reg"]
    comments, entries = parse_reg(raw)
    assert [e.kind for e in entries] == ["dword", "delete"]
    [line] = [c for c in comments if "audit saw REG_SZ \"1'" in c]
    assert line.isascii() and "\\r\\n" in line  # the line break is shown, not taken
