"""The ansible source, driving the real ansible-inventory on INI and YAML inventories."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from scanner.core.models import AuthMethod, Scheme
from scanner.inputs.sources import HostEntry, SourceError, SourceKind, SourceResult
from scanner.inputs.sources.ansible import AnsibleSource, AnsibleSourceConfig, redact

DATA = Path(__file__).parent / "data"
SECRETS = (
    "Ini-Host-Passw0rd!", "Become-Passw0rd!", "Group-Passw0rd!", "svc-ansible",
    "Yaml-Group-Passw0rd!", "Yaml-Db-Passw0rd!", "ignore",
)  # fmt: skip
ANSIBLE = shutil.which("ansible-inventory")


def source(inventory: Path | str, **fields: Any) -> AnsibleSource:
    """Return an ansible source for an inventory, with the real ansible-inventory on PATH."""
    config = AnsibleSourceConfig.model_validate({"type": "ansible", "inventory": str(inventory), **fields})
    return AnsibleSource(config)


def by_name(result: SourceResult) -> dict[str, HostEntry]:
    """Return the result's hosts by name."""
    return {h.name: h for h in result.hosts}


def assert_no_secret(result: SourceResult) -> None:
    """Fail when any secret of the test inventories is anywhere in the result."""
    dumped = result.model_dump_json() + repr(result)
    for secret in SECRETS:
        assert secret not in dumped


def groups(entry: HostEntry) -> set[str]:
    """Return the Ansible groups a host was tagged with."""
    return {k.removeprefix("ansible-group:") for k in entry.tags if k.startswith("ansible-group:")}


def test_ini_group_with_child_groups_maps_winrm_variables_and_tags_every_group() -> None:
    assert ANSIBLE is not None, "ansible-core is installed by scripts/test (the test extra)"
    result = source(DATA / "estate.ini", group="windows").resolve()
    hosts = by_name(result)

    assert list(hosts) == [
        "srv01.paris.example", "srv02.paris.example", "ws01.paris.example", "ws02.paris.example",
        "tyo01.tokyo.example",
    ]  # fmt: skip
    srv01 = hosts["srv01.paris.example"]
    assert (srv01.address, srv01.port, srv01.scheme, srv01.transport) == (
        "192.0.2.11", 5986, Scheme.HTTPS, AuthMethod.NTLM,
    )  # fmt: skip
    assert srv01.tags == {"ansible-group:paris_servers": "member", "ansible-group:paris": "member",
                          "ansible-group:windows": "member"}  # fmt: skip
    assert srv01.provenance.source is SourceKind.ANSIBLE
    assert srv01.provenance.origin == str(DATA / "estate.ini")
    assert srv01.provenance.entry == "srv01.paris.example"
    # No ansible_port: the winrm plugin's 5986 and, with it, https.
    srv02 = hosts["srv02.paris.example"]
    assert (srv02.address, srv02.port, srv02.scheme, srv02.transport) == (
        "192.0.2.12", 5986, Scheme.HTTPS, AuthMethod.KERBEROS,
    )  # fmt: skip
    assert (hosts["ws01.paris.example"].port, hosts["ws01.paris.example"].scheme) == (5985, Scheme.HTTP)
    ws02 = hosts["ws02.paris.example"]
    assert (ws02.port, ws02.scheme, ws02.transport) == (15986, Scheme.HTTPS, AuthMethod.NTLM)  # first of the list
    assert groups(hosts["tyo01.tokyo.example"]) == {"tokyo", "windows"}
    assert result.skipped == {}
    assert_no_secret(result)

    targets = {t.name: t for t in result.targets()}
    assert targets["ws01.paris.example"].address == "ws01.paris.example"  # no ansible_host: the name
    assert targets["srv01.paris.example"].source == f"{DATA / 'estate.ini'} srv01.paris.example"


def test_group_selection_picks_a_subtree_and_all_takes_every_host() -> None:
    paris = source(DATA / "estate.ini", group="paris").resolve()
    assert [h.name for h in paris.hosts] == [
        "srv01.paris.example", "srv02.paris.example", "ws01.paris.example", "ws02.paris.example",
    ]  # fmt: skip
    everything = by_name(source(DATA / "estate.ini").resolve())
    assert len(everything) == 6
    # Not a WinRM host: its ansible_port is SSH's, so it is not read; the source defaults apply.
    linux = everything["lnx01.example"]
    assert (linux.port, linux.scheme, linux.transport) == (None, Scheme.HTTP, AuthMethod.NTLM)
    assert groups(linux) == {"linux"}


def test_yaml_inventory_with_group_vars_and_a_host_in_two_groups() -> None:
    result = source(DATA / "estate.yml", group="windows", defaults={"site": "lab", "transport": "kerberos"}).resolve()
    hosts = by_name(result)
    assert list(hosts) == ["dc1.lab.example", "web1.lab.example", "web2.lab.example"]
    dc1 = hosts["dc1.lab.example"]
    assert (dc1.address, dc1.port, dc1.scheme, dc1.transport, dc1.site) == (
        "198.51.100.1", 5986, Scheme.HTTPS, AuthMethod.CREDSSP, "lab",
    )  # fmt: skip
    assert groups(dc1) == {"dc", "windows", "tier0"}  # tier0 is outside the chosen group, still a group of it
    web1 = hosts["web1.lab.example"]
    assert (web1.port, web1.scheme, web1.transport) == (5985, Scheme.HTTP, AuthMethod.KERBEROS)
    web2 = hosts["web2.lab.example"]
    assert (web2.port, web2.scheme) == (5986, Scheme.HTTP)  # the winrm plugin's port with the group's scheme
    assert dc1.to_target().tags["site"] == "lab"
    assert_no_secret(result)


def test_an_unknown_group_is_named() -> None:
    with pytest.raises(SourceError) as failed:
        source(DATA / "estate.ini", group="berlin").resolve()
    assert failed.value.reason == "group_not_found"
    assert "group 'berlin' is not in the inventory" in str(failed.value) and "paris_servers" in str(failed.value)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("h1.example ansible_connection=winrm ansible_winrm_transport=negotiate",
         "host 'h1.example': ansible_winrm_transport 'negotiate' is unknown"),
        ("h1.example ansible_connection=winrm ansible_winrm_transport=certificate",
         "certificate authentication is not supported"),
        ("h1.example ansible_connection=winrm ansible_winrm_scheme=ftp", "ansible_winrm_scheme 'ftp' must be http"),
        ("h1.example ansible_connection=winrm ansible_port=99999", "ansible_port '99999' must be an integer"),
        ("db_server ansible_connection=winrm", "host 'db_server': name 'db_server' has an invalid label"),
        ("h1.example ansible_winrm_transport=basic ansible_winrm_scheme=http",
         "transport basic requires scheme https"),
    ],
)  # fmt: skip
def test_bad_host_settings_are_clear_errors_naming_the_host(tmp_path: Path, line: str, message: str) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"[win]\n{line} ansible_password=Line-Passw0rd!\n")
    with pytest.raises(SourceError) as failed:
        source(inventory).resolve()
    assert failed.value.reason == "invalid_host"
    assert message in str(failed.value)
    assert "Line-Passw0rd!" not in str(failed.value)


def test_a_broken_inventory_is_an_error_with_ansible_s_reason(tmp_path: Path) -> None:
    inventory = tmp_path / "broken.ini"
    inventory.write_text("[web\nweb1 ansible_password=Broken-Passw0rd!\n")
    with pytest.raises(SourceError) as failed:
        source(inventory).resolve()
    assert failed.value.reason == "tool_failed"
    assert "ansible-inventory exited" in str(failed.value) and "No inventory was parsed" in str(failed.value)
    assert "Broken-Passw0rd!" not in str(failed.value)
    with pytest.raises(SourceError, match="No inventory was parsed"):
        source(tmp_path / "missing.ini").resolve()


def test_a_missing_ansible_inventory_names_the_extra(tmp_path: Path) -> None:
    config = AnsibleSourceConfig(inventory=str(DATA / "estate.ini"))
    empty = tmp_path / "bin"
    empty.mkdir()
    with pytest.raises(SourceError) as failed:
        AnsibleSource(config, environ={**os.environ, "PATH": str(empty)}).resolve()
    assert failed.value.reason == "missing_dependency"
    assert "ansible-inventory was not found on PATH" in str(failed.value)
    assert "pip install 'natt-audit[ansible]'" in str(failed.value)


def fake_program(folder: Path, body: str) -> dict[str, str]:
    """Write an ansible-inventory stand-in running `body` (sh); return an environment finding only it."""
    folder.mkdir()
    program = folder / "ansible-inventory"
    program.write_text(f"#!/bin/sh\n{body}\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{folder}:/usr/bin:/bin"}


def test_a_hanging_ansible_inventory_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    env = fake_program(tmp_path / "bin", "sleep 30")
    config = AnsibleSourceConfig(inventory="x", timeout=0.5)
    with pytest.raises(SourceError) as failed:
        AnsibleSource(config, environ=env).resolve()
    assert failed.value.reason == "timeout"


def test_output_past_the_cap_is_refused(tmp_path: Path) -> None:
    env = fake_program(tmp_path / "bin", "yes '{\"all\": {}}' | head -c 100000")
    config = AnsibleSourceConfig(inventory="x", max_output_bytes=50_000)
    with pytest.raises(SourceError) as failed:
        AnsibleSource(config, environ=env).resolve()
    assert failed.value.reason == "output_too_large"


def test_output_that_is_not_json_is_refused(tmp_path: Path) -> None:
    env = fake_program(tmp_path / "bin", "echo 'not json'")
    with pytest.raises(SourceError) as failed:
        AnsibleSource(AnsibleSourceConfig(inventory="x"), environ=env).resolve()
    assert failed.value.reason == "bad_output"


def test_a_credential_key_in_the_source_block_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as refused:
        AnsibleSourceConfig.model_validate({"inventory": "hosts.ini", "password": "Cfg-Passw0rd!"})
    assert "'password' is refused" in str(refused.value) and "Cfg-Passw0rd!" not in str(refused.value)


def test_ansible_messages_are_redacted() -> None:
    text = "bad line 'web1 ansible_password=Leak1 become_pass: Leak2' $ANSIBLE_VAULT;1.1;AES256\n6433 3966"
    cleaned = redact(text)
    assert "Leak1" not in cleaned and "Leak2" not in cleaned and "6433" not in cleaned
    assert "ansible_password=***" in cleaned and "\n" not in cleaned
