"""An inventory file with `sources:`: files, the real ansible-inventory, merging, cycles, failures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from scanner.core.models import AuthMethod, Scheme
from scanner.inputs.inventory import InventoryError, load_inventory
from scanner.inputs.sources import SourceKind
from scanner.inputs.sources.compose import load_with_sources, resolve_inventory

DATA = Path(__file__).parent / "data"


def write(folder: Path, name: str, text: str) -> Path:
    """Write one file of a test inventory and return its path."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(failed: pytest.ExceptionInfo[InventoryError]) -> list[str]:
    """Return the problems an InventoryError lists."""
    return list(failed.value.problems)


def test_a_yaml_inventory_composes_its_hosts_a_csv_and_an_ansible_group_in_order(tmp_path: Path) -> None:
    assert shutil.which("ansible-inventory"), "ansible-core is installed by scripts/test (the test extra)"
    write(tmp_path, "more.csv", "name,address,port,os_version\nws-0002,127.0.0.1,40002,10.0.19045\n")
    main = write(
        tmp_path,
        "main.yaml",
        "hosts:\n"
        "  - {name: ws-0001, address: 127.0.0.1, port: 40001}\n"
        "sources:\n"
        "  - {type: file, path: more.csv, defaults: {site: paris, transport: kerberos}}\n"
        f"  - {{type: ansible, inventory: {DATA / 'estate.ini'}, group: paris}}\n",
    )
    resolved = resolve_inventory(main, environ=os.environ)

    names = [h.target.name for h in resolved.hosts]
    assert names == ["ws-0001", "ws-0002", "srv01.paris.example", "srv02.paris.example",
                     "ws01.paris.example", "ws02.paris.example"]  # fmt: skip
    by_name = {h.target.name: h for h in resolved.hosts}
    csv_host = by_name["ws-0002"]
    assert (csv_host.target.transport, csv_host.site, csv_host.origin.source) == (
        AuthMethod.KERBEROS, "paris", f"{tmp_path / 'more.csv'}:2",
    )  # fmt: skip
    assert (csv_host.target.os_version, csv_host.os_from) == ("10.0.19045", f"{tmp_path / 'more.csv'}:2")
    srv01 = by_name["srv01.paris.example"]
    assert srv01.origin.type is SourceKind.ANSIBLE
    assert srv01.origin.source == f"ansible:{DATA / 'estate.ini'}"
    assert (srv01.target.address, srv01.target.port, srv01.target.scheme) == ("192.0.2.11", 5986, Scheme.HTTPS)
    assert [s.name for s in resolved.sources] == [f"file:{tmp_path / 'more.csv'}", f"ansible:{DATA / 'estate.ini'}"]
    assert [s.hosts for s in resolved.sources] == [1, 4]
    assert resolved.warnings == ()

    # The scan's view: the same targets, the file's own path (the inventory's identity), the sources.
    inventory = load_with_sources(main, environ=os.environ)
    assert inventory.path == str(main)
    assert inventory.targets == tuple(h.target for h in resolved.hosts)
    assert inventory.sources == resolved.sources


def test_a_plain_file_loads_as_the_inventory_loader_reads_it(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.txt", "srv01\nsrv02:5986\n")
    assert load_with_sources(path) == load_inventory(path)
    assert [h.origin.source for h in resolve_inventory(path).hosts] == [f"{path}:1", f"{path}:2"]


def test_the_same_host_from_two_places_is_one_target_and_a_warning_naming_both(tmp_path: Path) -> None:
    write(tmp_path, "more.csv", "name,address,port,tag:role\nWS-0001.,127.0.0.1,40001,web\n")
    main = write(
        tmp_path,
        "main.yaml",
        "hosts:\n  - {name: ws-0001, address: 127.0.0.1, port: 40001, tags: {site: paris}}\n"
        "sources:\n  - {type: file, path: more.csv}\n",
    )
    resolved = resolve_inventory(main)
    assert len(resolved.hosts) == 1
    host = resolved.hosts[0]
    assert host.target.tags == {"site": "paris", "role": "web"}  # the tags of both
    assert [o.source for o in host.also] == [f"{tmp_path / 'more.csv'}:2"]
    assert resolved.warnings == (
        f"host 'WS-0001.' is listed by {main}:2 and {tmp_path / 'more.csv'}:2: scanned once",
    )


def test_a_field_one_source_leaves_unsaid_comes_from_the_other(tmp_path: Path) -> None:
    # An Ansible host that is not a WinRM host gives no port, and without ansible_host no address:
    # the file that says both completes it (as a file of addresses completes an LDAP source).
    write(tmp_path, "hosts.ini", "[windows]\nsrv01.lab.test\n")
    main = write(
        tmp_path,
        "main.yaml",
        "hosts:\n  - {name: srv01.lab.test, address: 127.0.0.1, port: 40001}\n"
        "sources:\n  - {type: ansible, inventory: hosts.ini, group: windows}\n",
    )
    host = resolve_inventory(main, environ=os.environ).hosts[0]
    assert (host.target.address, host.target.port) == ("127.0.0.1", 40001)
    assert host.target.tags == {"ansible-group:windows": "member"}


def test_a_conflicting_duplicate_is_an_error_naming_both_origins(tmp_path: Path) -> None:
    write(tmp_path, "more.csv", "name,address,port,transport\nws-0001,127.0.0.2,40009,kerberos\n")
    main = write(
        tmp_path,
        "main.yaml",
        "hosts:\n  - {name: ws-0001, address: 127.0.0.1, port: 40001}\nsources:\n  - {type: file, path: more.csv}\n",
    )
    with pytest.raises(InventoryError) as failed:
        load_with_sources(main)
    assert problems(failed) == [
        f"{main}: host 'ws-0001' is listed by {main}:2 and {tmp_path / 'more.csv'}:2 with different "
        "address ('127.0.0.1' and '127.0.0.2'); port (40001 and 40009); transport ('ntlm' and 'kerberos')"
    ]
    assert failed.value.exit_code == 2


def test_two_names_at_one_address_and_port_across_sources_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "more.txt", "127.0.0.1:40001\n")
    main = write(
        tmp_path,
        "main.yaml",
        "hosts:\n  - {name: ws-0001, address: 127.0.0.1, port: 40001}\nsources:\n  - {type: file, path: more.txt}\n",
    )
    with pytest.raises(InventoryError, match=r"hosts 'ws-0001' .* and '127.0.0.1' .* are both '127.0.0.1' port 40001"):
        load_with_sources(main)


def test_a_file_including_itself_is_refused_directly_or_through_another(tmp_path: Path) -> None:
    self_loop = write(tmp_path, "self.yaml", "hosts: [{name: a1}]\nsources:\n  - {type: file, path: self.yaml}\n")
    with pytest.raises(InventoryError) as failed:
        load_with_sources(self_loop)
    assert problems(failed) == [
        f"{self_loop}:3:24: file source 'self.yaml' includes itself ({self_loop} -> {self_loop})"
    ]
    first = write(tmp_path, "a.yaml", "sources:\n  - {type: file, path: sub/b.yaml}\n")
    (tmp_path / "sub").mkdir()
    second = write(tmp_path / "sub", "b.yaml", "hosts: [{name: b1}]\nsources:\n  - {type: file, path: ../a.yaml}\n")
    with pytest.raises(InventoryError) as failed:
        load_with_sources(first)
    assert problems(failed) == [
        f"{second}:3:24: file source '../a.yaml' includes itself ({first} -> {second} -> {first})"
    ]


def test_a_yaml_with_sources_may_be_included_and_its_sources_are_listed(tmp_path: Path) -> None:
    write(tmp_path, "leaf.txt", "leaf01\n")
    write(tmp_path, "mid.yaml", "hosts: [{name: mid01}]\nsources:\n  - {type: file, path: leaf.txt}\n")
    top = write(tmp_path, "top.yaml", "sources:\n  - {type: file, path: mid.yaml, defaults: {site: lyon}}\n")
    resolved = resolve_inventory(top)
    assert [(h.target.name, h.site) for h in resolved.hosts] == [("mid01", "lyon"), ("leaf01", "lyon")]
    assert [(s.name, s.hosts) for s in resolved.sources] == [
        (f"file:{tmp_path / 'mid.yaml'}", 2), (f"file:{tmp_path / 'leaf.txt'}", 1),
    ]  # fmt: skip


def test_every_bad_source_entry_is_named_by_line_before_any_source_runs(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        "main.yaml",
        "hosts: [{name: a1}]\n"
        "sources:\n"
        "  - {type: ansible, inventory: hosts.ini}\n"  # valid, never run: the entries below are wrong
        "  - {type: ldap, url: 'ldap://dc1.lab.test', base: 'DC=lab,DC=test', auth: simple}\n"
        "  - {type: ansible, inventory: x.ini, password: Typed-Passw0rd!}\n"
        "  - {type: cmdb, url: x}\n",
    )
    with pytest.raises(InventoryError) as failed:
        load_with_sources(main, environ={"PATH": ""})
    found = problems(failed)
    assert [p.split(": ", 1)[0] for p in found] == [f"{main}:4:5", f"{main}:5:5", f"{main}:6:5"]
    assert "auth: simple over ldap:// would send the password in clear text" in found[0]
    assert "'password' is refused" in found[1]
    assert "'cmdb' found using 'type' does not match any of the expected tags: 'ldap', 'ansible', 'file'" in found[2]
    assert "Typed-Passw0rd!" not in str(failed.value)


def test_a_failing_source_fails_the_whole_inventory_with_its_reason(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        "main.yaml",
        "hosts: [{name: a1}]\nsources:\n  - {type: ansible, inventory: hosts.ini}\n",
    )
    empty = tmp_path / "empty-path"
    empty.mkdir()
    with pytest.raises(InventoryError) as failed:
        load_with_sources(main, environ={"PATH": str(empty)})
    assert problems(failed) == [
        f"{main}:3:5: ansible source hosts.ini failed (missing_dependency): ansible-inventory was not found on "
        "PATH; the ansible source needs ansible-core: pip install 'natt-audit[ansible]'"
    ]


def test_sources_need_at_least_one_entry_and_the_plain_loader_refuses_them(tmp_path: Path) -> None:
    empty = write(tmp_path, "empty.yaml", "hosts: [{name: a1}]\nsources: []\n")
    with pytest.raises(InventoryError, match=r"empty.yaml:2:10: sources: the list is empty"):
        load_with_sources(empty)
    listed = write(tmp_path, "listed.yaml", "sources:\n  - {type: file, path: x.txt}\n")
    with pytest.raises(InventoryError, match=r"listed.yaml:2:5: this inventory lists sources"):
        load_inventory(listed)
