"""Property tests: whatever text a host stored, every plan format carries it as data, never as code."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reports.remediation import ansible, gpo, powershell, reg
from reports.remediation.plan import DeleteValue, Observed, RemediationPlan, SetValue
from reports.remediation.text import comment_text
from tests.reports.remediation.psparse import evaluate
from tests.reports.remediation.regparse import parse_reg
from tests.reports.remediation.sample import make_plan

# Every code point, lone surrogates included (a REG_SZ is UTF-16 and may hold one; the report keeps it).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=300)
PLAN = make_plan()
TRICKY = [
    "",
    "'",
    "\u2019; Remove-Item C:\\ #",
    "\r\n[HKEY_LOCAL_MACHINE\\SOFTWARE\\Evil]\r\n\"x\"=dword:1",
    "{{ lookup('pipe', 'id') }}",
    "--><x/>",
    "\ud800",
    "\U0001f600",
    " " * 150,
    "a\\",
]


def tricky(test: Callable[[str], None]) -> Callable[[str], None]:
    """Run `test` on every TRICKY text as well as on generated ones."""
    for text in TRICKY:
        test = example(text)(test)
    return test


class _UnsafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus Ansible's !unsafe tag."""


_UnsafeLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def with_before(text: str) -> RemediationPlan:
    """Return the sample plan with `text` as the REG_SZ before of its stray delete on w2003-sz."""
    hosts = []
    for host in PLAN.hosts:
        if host.name == "w2003-sz":
            actions = [
                a.model_copy(update={"before": Observed(name="x", type="REG_SZ", data=text)})
                if isinstance(a, DeleteValue)
                else a
                for a in host.actions
            ]
            host = host.model_copy(update={"actions": actions})
        hosts.append(host)
    return PLAN.model_copy(update={"hosts": hosts})


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
@example("\r\n- evil: true\n\"")
@tricky
def test_yaml_quote_round_trips_and_stays_printable(text: str) -> None:
    lines = ansible.yaml_quote(text, indent=6)
    assert all(line.isascii() and line.isprintable() for line in lines)
    assert all(len(line) <= ansible.WRAP + 6 + 12 for line in lines)
    assert yaml.safe_load("\n".join(lines)) == text


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
@example("\u2018\u2019\u201a\u201b'")
@tricky
def test_ps_string_evaluates_to_the_text_and_cannot_end_early(text: str) -> None:
    expression = powershell.ps_string(text)
    assert expression.isascii() and "\n" not in expression and "\r" not in expression
    expected = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    assert evaluate(expression) == expected


@given(ANY_TEXT)
def test_comment_text_is_one_printable_line(text: str) -> None:
    line = comment_text(text)
    assert line.isascii() and line.isprintable() and len(line) <= 200


@settings(max_examples=100, deadline=None)
@given(ANY_TEXT)
@tricky
def test_host_text_adds_no_reg_line(text: str) -> None:
    raw = reg.write(with_before(text))["set-IPsec-0.delete-PolicyAgent.reg"]
    _, entries = parse_reg(raw)
    assert [(e.key.rsplit("\\", 1)[1], e.kind) for e in entries] == [("IPsec", "dword"), ("PolicyAgent", "delete")]


@settings(max_examples=100, deadline=None)
@given(ANY_TEXT)
@tricky
def test_host_text_adds_no_gpp_item(text: str) -> None:
    root = ET.fromstring(gpo.render(with_before(text)).encode("utf-8"))
    assert len(root) == sum(isinstance(a, SetValue | DeleteValue) for h in PLAN.hosts for a in h.actions)
    assert all(item.get("desc", "").isascii() for item in root)


@settings(max_examples=100, deadline=None)
@given(ANY_TEXT)
@tricky
def test_host_text_reaches_the_inventory_intact(text: str) -> None:
    inventory = yaml.load(ansible.render_inventory(with_before(text)), Loader=_UnsafeLoader)
    hosts = inventory["all"]["children"][ansible.GROUP]["hosts"]
    assert list(hosts) == [h.name for h in PLAN.hosts]
    assert hosts["w2003-sz"]["natt_checks"][1]["before"]["value"] == text


@settings(max_examples=100, deadline=None)
@given(ANY_TEXT)
@tricky
def test_host_text_reaches_the_script_as_data(text: str) -> None:
    script = powershell.render(with_before(text))
    stray = "'SYSTEM\\CurrentControlSet\\Services\\PolicyAgent'; Before"
    [line] = [line for line in script.splitlines() if stray in line and "Type = 'REG_SZ'" in line]
    expression = line.split("Data = ", 1)[1].rsplit(" } }", 1)[0]
    expected = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    assert evaluate(expression) == expected



def with_name(name: str) -> RemediationPlan:
    """Return the sample plan with its first host renamed, bypassing the model's own name check."""
    first = PLAN.hosts[0]
    forged = first.model_construct(**{**dict(first), "name": name})
    return PLAN.model_copy(update={"hosts": [forged, *PLAN.hosts[1:]]})


HOSTILE_NAMES = ["x'; Remove-Item C:\\ -Recurse #", "web[1:9]", "a,b", "{{ lookup('pipe','id') }}", "h\n- evil"]


@settings(max_examples=100, deadline=None)
@given(ANY_TEXT)
@example(HOSTILE_NAMES[0])
def test_a_forged_host_name_is_data_in_the_script(name: str) -> None:
    script = powershell.render(with_name(name))
    [line] = [line for line in script.splitlines() if line.startswith("        Name    = ")][:1]
    expected = name.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    assert evaluate(line.split("= ", 1)[1]) == expected


def test_a_forged_host_name_never_reaches_the_inventory_or_a_filter() -> None:
    for name in HOSTILE_NAMES:
        plan = with_name(name)
        with pytest.raises(ValueError, match="not an inventory host name"):
            ansible.render_inventory(plan)
        with pytest.raises(ValueError, match="cannot be targeted"):
            gpo.render(plan)
        _, entries = parse_reg(reg.write(plan)[f"{plan.hosts[0].change_set}.reg"])  # a comment only
        assert all(e.name == "AssumeUDPEncapsulationContextOnSendRule" for e in entries)
