"""Host entries turn into the Targets a scan uses, under the inventory file's rules."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from scanner.core.models import AuthMethod, Scheme
from scanner.inputs.sources import (
    HostEntry,
    OsFacts,
    Provenance,
    SourceDefaults,
    SourceError,
    SourceKind,
    SourceResult,
    apply_defaults,
)

LDAP = Provenance(source=SourceKind.LDAP, origin="ldaps://dc1.lab.test:636", entry="CN=WS1,OU=Paris,DC=lab,DC=test")


def test_an_entry_without_port_or_address_gets_the_scheme_port_and_its_name_as_address() -> None:
    entry = HostEntry(
        name="ws1.lab.test", scheme=Scheme.HTTPS, tags={"ou": "Paris"}, site="paris",
        os=OsFacts(caption="Windows 10 Enterprise", version="10.0.19045"), provenance=LDAP,
    )  # fmt: skip
    target = entry.to_target()
    assert (target.name, target.address, target.port, target.scheme) == (
        "ws1.lab.test", "ws1.lab.test", 5986, Scheme.HTTPS,
    )  # fmt: skip
    assert target.transport is AuthMethod.NTLM
    # The caption is an inventory fact (a tag for policy scopes); the version lets the collector skip WQL.
    assert target.tags == {"ou": "Paris", "site": "paris", "os_caption": "Windows 10 Enterprise"}
    assert target.os_version == "10.0.19045"
    assert target.source == "ldaps://dc1.lab.test:636 CN=WS1,OU=Paris,DC=lab,DC=test"
    assert HostEntry(name="ws2", provenance=LDAP).to_target().port == 5985


def test_a_garbled_caption_is_dropped_and_a_missing_version_stays_unknown() -> None:
    entry = HostEntry(name="ws1", os=OsFacts(caption="Windows\x1b[2J 10"), provenance=LDAP)
    target = entry.to_target()
    assert "os_caption" not in target.tags and target.os_version is None


def test_a_site_tag_already_on_the_host_wins_over_the_site_field() -> None:
    entry = HostEntry(name="ws1", tags={"site": "lyon"}, site="paris", provenance=LDAP)
    assert entry.to_target().tags == {"site": "lyon"}


def test_a_file_entry_keeps_its_path_and_line_as_source() -> None:
    where = Provenance(source=SourceKind.FILE, origin="hosts.yaml", entry="hosts.yaml:7")
    entry = HostEntry(name="srv1", address="192.0.2.7", port=40001, group="dc", provenance=where)
    target = entry.to_target()
    assert (target.source, target.address, target.port, target.group) == ("hosts.yaml:7", "192.0.2.7", 40001, "dc")


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"name": "db_server"}, "has an invalid label 'db_server'"),
        ({"name": "ws1", "address": "10.0.0.1/24"}, "address '10.0.0.1/24' contains a path separator"),
        ({"name": "ws1", "transport": AuthMethod.BASIC}, "transport basic requires scheme https"),
        ({"name": "ws1", "tags": {"role": "a\x1bb"}}, "tag 'role': the value is empty or holds control characters"),
    ],
)
def test_entries_that_break_an_inventory_rule_are_refused_naming_where_they_came_from(
    fields: dict[str, object], problem: str
) -> None:
    entry = HostEntry.model_validate({**fields, "provenance": LDAP})
    with pytest.raises(SourceError) as failed:
        entry.to_target()
    assert failed.value.reason == "invalid_host"
    assert problem in str(failed.value)
    assert str(failed.value).startswith("ldaps://dc1.lab.test:636 CN=WS1,OU=Paris,DC=lab,DC=test: ")


def test_a_result_lists_every_bad_entry_at_once() -> None:
    result = SourceResult(
        source=SourceKind.ANSIBLE,
        origin="hosts.ini",
        hosts=(
            HostEntry(name="a_1", provenance=Provenance(source=SourceKind.ANSIBLE, origin="hosts.ini", entry="a_1")),
            HostEntry(name="ok", provenance=Provenance(source=SourceKind.ANSIBLE, origin="hosts.ini", entry="ok")),
            HostEntry(name="b_2", provenance=Provenance(source=SourceKind.ANSIBLE, origin="hosts.ini", entry="b_2")),
        ),
        skipped={"disabled": 2, "stale": 1},
    )
    assert result.skipped_total == 3
    with pytest.raises(SourceError) as failed:
        result.targets()
    assert len(failed.value.problems) == 2
    assert failed.value.problems[0].startswith("hosts.ini a_1: name 'a_1'")


def test_entries_are_frozen() -> None:
    entry = HostEntry(name="ws1", provenance=LDAP)
    with pytest.raises(ValidationError):
        entry.name = "ws2"  # type: ignore[misc]


def test_defaults_fill_what_the_host_does_not_say_and_refuse_basic_over_http() -> None:
    defaults = SourceDefaults(scheme=Scheme.HTTPS, transport=AuthMethod.KERBEROS, port=15986, site="paris")
    assert apply_defaults(defaults) == (Scheme.HTTPS, AuthMethod.KERBEROS, 15986)
    assert apply_defaults(defaults, scheme=Scheme.HTTP, port=5985) == (Scheme.HTTP, AuthMethod.KERBEROS, 5985)
    assert apply_defaults(SourceDefaults()) == (Scheme.HTTP, AuthMethod.NTLM, None)
    with pytest.raises(ValidationError, match="transport basic requires scheme https"):
        SourceDefaults(transport=AuthMethod.BASIC)
    with pytest.raises(ValidationError):
        SourceDefaults.model_validate({"port": 0})
    with pytest.raises(ValidationError):
        SourceDefaults.model_validate({"port": "5985"})
    with pytest.raises(ValidationError):
        SourceDefaults.model_validate({"tags": {}})
