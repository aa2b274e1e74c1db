"""`natt-audit inventory show`, and scans of inventories with `sources:`, through the real CLI and lab."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from scanner.cli.main import main
from scanner.core.exitcodes import ExitCode
from tests.peers.lab import start_lab
from tests.scanner.conftest import ScanLab
from tests.support.cliproc import LAB_CREDS, run_cli

SOURCES_DATA = Path(__file__).parents[1] / "inputs" / "sources" / "data"


def show(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, list[str]]:
    """Run `inventory show ARGV` in this process; return the exit code, stdout and stderr lines."""
    code = main(["inventory", "show", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err.splitlines()


def write(folder: Path, name: str, text: str) -> Path:
    """Write one inventory file and return its path."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "text", "row"),
    [
        ("hosts.yaml", "hosts:\n  - {name: ws-0001, address: 127.0.0.1, port: 40001, tags: {site: paris}}\n",
         ["ws-0001", "127.0.0.1", "40001", "http", "ntlm", "paris", "site=paris", "hosts.yaml:2"]),
        ("hosts.csv", "name,port,scheme,os_version\nsrv01,5986,https,6.1.7601\n",
         ["srv01", "srv01", "5986", "https", "ntlm", "6.1.7601", "(hosts.csv:2)", "hosts.csv:2"]),
        ("hosts.txt", "# comment\nsrv02.corp.example:5987\n",
         ["srv02.corp.example", "srv02.corp.example", "5987", "http", "ntlm", "hosts.txt:2"]),
    ],
)  # fmt: skip
def test_show_prints_a_file_s_targets_as_a_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, text: str,
    row: list[str],
) -> None:  # fmt: skip
    write(tmp_path, name, text)
    monkeypatch.chdir(tmp_path)
    code, out, err = show(capsys, "-i", name)
    assert code == ExitCode.OK and err == []
    lines = out.splitlines()
    assert lines[0].split() == ["Name", "Address", "Port", "Scheme", "Transport", "Site", "OS", "Tags", "Source"]
    assert lines[2].split() == row
    assert lines[3:] == [f"1 hosts from {name}"]


def test_show_json_lists_every_host_with_its_source_and_the_skipped_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert shutil.which("ansible-inventory"), "ansible-core is installed by scripts/test (the test extra)"
    write(tmp_path, "more.csv", "name,address,port,os_version\nws-0002,127.0.0.1,40002,10.0.19045\n")
    main_file = write(
        tmp_path,
        "main.yaml",
        "hosts:\n"
        "  - {name: ws-0001, address: 127.0.0.1, port: 40001}\n"
        "sources:\n"
        "  - {type: file, path: more.csv, defaults: {site: paris}}\n"
        f"  - {{type: ansible, inventory: {SOURCES_DATA / 'estate.yml'}, group: web}}\n"
        f"  - {{type: ansible, inventory: {SOURCES_DATA / 'estate.ini'}, group: tokyo}}\n",
    )
    code, out, err = show(capsys, "-i", str(main_file), "-f", "json")
    assert code == ExitCode.OK and err == []
    doc = json.loads(out)
    assert list(doc) == ["inventory", "hosts", "skipped", "sources"]
    assert doc["skipped"] == {}
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert list(hosts) == ["ws-0001", "ws-0002", "web1.lab.example", "web2.lab.example", "tyo01.tokyo.example"]
    assert hosts["ws-0002"]["site"] == "paris"
    assert hosts["ws-0002"]["os"] == {"version": "10.0.19045", "caption": None, "from": f"{tmp_path / 'more.csv'}:2"}
    assert hosts["ws-0002"]["source"] == {
        "type": "file", "name": f"{tmp_path / 'more.csv'}:2", "entry": f"{tmp_path / 'more.csv'}:2",
    }  # fmt: skip
    web1 = hosts["web1.lab.example"]
    assert (web1["port"], web1["scheme"], web1["source"]["type"]) == (5985, "http", "ansible")
    assert web1["source"]["name"] == f"ansible:{SOURCES_DATA / 'estate.yml'}"
    assert hosts["tyo01.tokyo.example"]["source"]["entry"] == "tyo01.tokyo.example"
    assert [(s["type"], s["hosts"]) for s in doc["sources"]] == [("file", 1), ("ansible", 2), ("ansible", 1)]
    for secret in ("Yaml-Group-Passw0rd!", "Yaml-Db-Passw0rd!", "Group-Passw0rd!"):
        assert secret not in out


def test_show_warns_about_a_duplicate_and_refuses_a_conflict_naming_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "same.csv", "name,address,port\nws-0001,127.0.0.1,40001\n")
    write(tmp_path, "other.csv", "name,address,port\nws-0001,127.0.0.1,40009\n")
    head = "hosts:\n  - {name: ws-0001, address: 127.0.0.1, port: 40001}\nsources:\n"
    dup = write(tmp_path, "dup.yaml", head + "  - {type: file, path: same.csv}\n")
    code, out, err = show(capsys, "-i", str(dup))
    assert code == ExitCode.OK and "1 hosts from" in out
    same = tmp_path / "same.csv"
    assert err == [f"natt-audit: warning: host 'ws-0001' is listed by {dup}:2 and {same}:2: scanned once"]
    conflict = write(tmp_path, "conflict.yaml", head + "  - {type: file, path: other.csv}\n")
    code, out, err = show(capsys, "-i", str(conflict))
    assert code == ExitCode.USAGE and out == ""
    assert err == [
        f"natt-audit: error: {conflict}: host 'ws-0001' is listed by {conflict}:2 and {tmp_path / 'other.csv'}:2 "
        "with different port (40001 and 40009)"
    ]


def test_show_runs_the_scan_s_validation_exit_2_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, "bad.yaml", "hosts:\n  - {name: ws-0001}\n  - {name: 'user@ws-0002'}\n")
    code, out, err = show(capsys, "-i", str(bad))
    assert code == ExitCode.USAGE and out == ""
    assert err[0].startswith(f"natt-audit: error: {bad}:3:") and "contains '@'" in err[0]
    code, out, err = show(capsys)
    assert code == ExitCode.USAGE and "no inventory" in err[0]


def test_show_runs_as_a_child_process(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.txt", "srv01\n")
    proc = run_cli("inventory", "show", "-i", str(path), "-f", "json")
    assert proc.returncode == 0, proc.stderr
    assert [h["name"] for h in json.loads(proc.stdout)["hosts"]] == ["srv01"]


# --- scans ----------------------------------------------------------------------------------------


def rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return the report's hosts by name, tags left out (sources add their own), requests included."""
    return {h["name"]: {k: v for k, v in h.items() if k != "tags"} for h in report["hosts"]}


def test_a_scan_of_an_inventory_with_sources_gives_the_rows_of_the_plain_inventory(
    scan_lab: ScanLab, lab_env: Path
) -> None:
    names = ("e-pass", "e-fail", "e-refused")
    plain = scan_lab.inventory(*names, file="plain-sources-e2e.yaml")
    hosts = scan_lab.lab.hosts
    folder = lab_env / "inv"
    folder.mkdir()
    write(folder, "more.csv", f"name,address,port,tag:site\ne-fail,127.0.0.1,{hosts['e-fail'][1]},tokyo\n")
    write(
        folder,
        "hosts.ini",
        "[windows]\n"
        f"e-refused ansible_host=127.0.0.1 ansible_port={hosts['e-refused'][1]} ansible_connection=winrm "
        "ansible_winrm_scheme=http ansible_password=Ansible-Passw0rd!\n",
    )
    composed = write(
        folder,
        "main.yaml",
        f"hosts:\n  - {{name: e-pass, address: 127.0.0.1, port: {hosts['e-pass'][1]}, tags: {{site: paris}}}}\n"
        "sources:\n  - {type: file, path: more.csv}\n  - {type: ansible, inventory: hosts.ini, group: windows}\n",
    )
    reports = {}
    env = {**LAB_CREDS, "XDG_STATE_HOME": str(lab_env / "state")}
    for label, inventory in (("plain", plain), ("composed", composed)):
        out = lab_env / f"{label}.json"
        proc = run_cli(
            "scan", "-i", str(inventory), "-f", "json", "-o", str(out), "--host-timeout", "4", "--min-coverage", "0",
            env=env,
        )  # fmt: skip
        assert proc.returncode == ExitCode.FINDINGS, proc.stderr
        assert "Ansible-Passw0rd!" not in proc.stderr
        reports[label] = json.loads(out.read_text(encoding="utf-8"))
    assert rows(reports["composed"]) == rows(reports["plain"])
    tags = {h["name"]: h["tags"] for h in reports["composed"]["hosts"]}
    assert tags == {
        "e-pass": {"site": "paris"}, "e-fail": {"site": "tokyo"}, "e-refused": {"ansible-group:windows": "member"},
    }  # fmt: skip
    assert reports["plain"]["inventory"] is None
    assert reports["composed"]["inventory"] == {
        "sources": [
            {"type": "file", "name": f"file:{folder / 'more.csv'}", "hosts": 1, "skipped": {}},
            {"type": "ansible", "name": f"ansible:{folder / 'hosts.ini'}", "hosts": 1, "skipped": {}},
        ],
        "os_version_disagreements": 0,
    }
    # The inventory's identity (drift, resume) is the composed file's path, night after night.
    history = run_cli("history", "-f", "json", env=env)
    assert history.returncode == 0, history.stderr
    ids = [scan["inventory_id"] for scan in json.loads(history.stdout)]
    assert f"path:{composed.resolve()}" in ids and f"path:{plain.resolve()}" in ids


def test_a_failing_source_stops_the_scan_before_any_host_is_contacted(tmp_path: Path) -> None:
    estate = write(
        tmp_path,
        "estate.yaml",
        "accounts:\n  - {username: 'LAB\\auditor', password: 'Lab-Passw0rd!'}\n"
        "hosts:\n  - {name: ws-0001, os: win10}\n",
    )
    stats = tmp_path / "stats.json"
    with start_lab(estate, tmp_path / "lab", extra_args=["--stats-out", str(stats)]) as lab:
        _, port, _ = lab.hosts["ws-0001"]
        inventory = write(
            tmp_path,
            "main.yaml",
            f"hosts:\n  - {{name: ws-0001, address: 127.0.0.1, port: {port}}}\n"
            "sources:\n"
            "  - {type: ldap, url: 'ldaps://127.0.0.1:1', base: 'DC=lab,DC=test', auth: simple, username: a}\n",
        )
        env = {**LAB_CREDS, "NATT_AUDIT_LDAP_PASSWORD": "Ldap-Passw0rd!"}
        proc = run_cli("scan", "-i", str(inventory), "--no-history", "-f", "json", env=env)
        assert proc.returncode == ExitCode.USAGE
        assert proc.stdout == ""
        assert proc.stderr.strip() == (
            f"natt-audit: error: {inventory}:4:5: ldap source ldaps://127.0.0.1:1 failed (unreachable): "
            "connection refused by 127.0.0.1 port 1"
        )
        empty = tmp_path / "empty-path"
        empty.mkdir()
        no_ansible = write(tmp_path, "ansible.yaml", "sources:\n  - {type: ansible, inventory: hosts.ini}\n")
        proc = run_cli("scan", "-i", str(no_ansible), "--no-history", env={**LAB_CREDS, "PATH": str(empty)})
        assert proc.returncode == ExitCode.USAGE
        assert "failed (missing_dependency): ansible-inventory was not found on PATH" in proc.stderr
    assert json.loads(stats.read_text(encoding="utf-8"))["connections"] == 0
    assert "Ldap-Passw0rd!" not in proc.stderr and os.environ.get("NATT_AUDIT_LDAP_PASSWORD") is None
