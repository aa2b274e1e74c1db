"""The file source wraps the inventory loader; the registry picks a source by `type:`."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from scanner.core.models import AuthMethod, Scheme
from scanner.inputs.inventory import load_inventory
from scanner.inputs.sources import SourceError, SourceKind
from scanner.inputs.sources.ansible import AnsibleSource
from scanner.inputs.sources.file import FileSource, FileSourceConfig
from scanner.inputs.sources.ldap import LdapSource
from scanner.inputs.sources.registry import SOURCE_CONFIG, open_source

YAML = """\
defaults: {tags: {site: tokyo}}
hosts:
  - {name: ws-0001, address: 127.0.0.1, port: 40001, tags: {role: workstation}}
  - name: gw-0002
    scheme: https
    group: gateways
"""


def test_a_file_source_gives_back_the_loader_s_targets_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(YAML)
    result = FileSource(FileSourceConfig(path="hosts.yaml"), base_dir=tmp_path).resolve()
    assert result.source is SourceKind.FILE and result.skipped == {}
    assert result.targets() == list(load_inventory(path).targets)
    first = result.hosts[0]
    assert (first.address, first.provenance.entry) == ("127.0.0.1", f"{path}:3")
    assert result.hosts[1].address is None  # the loader's address was the name itself


def test_file_source_defaults_reach_the_loader(tmp_path: Path) -> None:
    path = tmp_path / "hosts.txt"
    path.write_text("srv01\nsrv02:5985\n")
    config = FileSourceConfig.model_validate(
        {"path": str(path), "defaults": {"scheme": "https", "transport": "kerberos", "site": "paris"}}
    )
    targets = FileSource(config).resolve().targets()
    assert [(t.port, t.scheme, t.transport) for t in targets] == [
        (5986, Scheme.HTTPS, AuthMethod.KERBEROS), (5985, Scheme.HTTPS, AuthMethod.KERBEROS),
    ]  # fmt: skip
    assert targets[0].tags == {"site": "paris"}


def test_a_bad_file_is_a_source_error_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "hosts.txt"
    path.write_text("srv,01\nok\nuser@srv02\n")
    with pytest.raises(SourceError) as failed:
        FileSource(FileSourceConfig(path=str(path))).resolve()
    assert failed.value.reason == "invalid_inventory"
    assert [p.split(": ", 1)[0] for p in failed.value.problems] == [f"{path}:1", f"{path}:3"]


def test_the_registry_validates_by_type_and_opens_the_matching_source(tmp_path: Path) -> None:
    ldap = SOURCE_CONFIG.validate_python(
        {"type": "ldap", "url": "ldaps://dc1.lab.test", "auth": "simple", "base": "DC=lab,DC=test", "ca_file": "ca.pem"}
    )
    ansible = SOURCE_CONFIG.validate_python({"type": "ansible", "inventory": "hosts.ini", "group": "windows"})
    file = SOURCE_CONFIG.validate_python({"type": "file", "path": "hosts.yaml"})
    opened = open_source(ldap, base_dir=tmp_path, environ={})
    assert isinstance(opened, LdapSource) and opened.endpoint.ca_file == str(tmp_path / "ca.pem")
    assert isinstance(open_source(ansible), AnsibleSource)
    assert isinstance(open_source(file, base_dir=tmp_path), FileSource)
    with pytest.raises(ValidationError, match="expected tags: 'ldap', 'ansible', 'file'") as refused:
        SOURCE_CONFIG.validate_python({"type": "csv", "path": "x", "password": "Typed-Passw0rd!"})
    assert "Typed-Passw0rd!" not in str(refused.value)
