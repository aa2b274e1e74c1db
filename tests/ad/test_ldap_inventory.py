"""Inventories with an ldap source against the real Samba AD DC: `inventory show`, and scans of the lab.

The directory holds computer objects whose dNSHostName is a lab host's name. There is no DNS here, so
the addresses come the way many estates keep them: a file (the lab's own inventory) listing the same
names with address and port, merged with the directory's hosts
(docs/inventory.md#merging-the-same-host-from-several-places).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scanner.core.exitcodes import ExitCode
from scanner.inputs.sources.ldap import ENV_PASSWORD, filetime
from scanner.lab.tls import issue_certificates
from tests.peers.lab import RunningLab, start_lab
from tests.peers.samba_dc import SambaDC
from tests.support.cliproc import LAB_CREDS, run_cli

OU = "OU=Invsources,DC=lab,DC=test"
ESTATE = """\
accounts:
  - {username: 'LAB\\auditor', password: 'Lab-Passw0rd!'}
hosts:
  # No VERSION in the NTLM CHALLENGE: the directory's version spares the WQL read.
  - {name: nat01.lab.test, os: win10, ntlm_version: false}
  # The CHALLENGE says 6.1 while the directory says 10.0: the host wins, the report counts it.
  - {name: nat02.lab.test, os: win7}
"""


def computer(cn: str, dns: str | None, caption: str, version: str, uac: int = 4096) -> str:
    """Return the LDIF record of one computer object in the test OU."""
    lines = [f"dn: CN={cn},{OU}", "objectClass: computer", f"sAMAccountName: {cn}$", f"userAccountControl: {uac}"]
    if dns is not None:
        lines.append(f"dNSHostName: {dns}")
    lines += [f"operatingSystem: {caption}", f"operatingSystemVersion: {version}"]
    lines.append(f"lastLogonTimestamp: {filetime(dt.datetime.now(dt.UTC) - dt.timedelta(days=1))}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def directory(samba_dc: SambaDC) -> str:
    """Add the test OU with two computers that are lab hosts, a disabled one and one without a DNS name."""
    records = [
        f"dn: {OU}\nobjectClass: organizationalUnit\n",
        computer("NAT01", "nat01.lab.test", "Windows 10 Enterprise", "10.0 (19045)"),
        computer("NAT02", "nat02.lab.test", "Windows Server 2019 Standard", "10.0 (17763)"),
        computer("NAT03", "nat03.lab.test", "Windows 10 Enterprise", "10.0 (19045)", uac=4098),  # disabled
        computer("NAT04", None, "Windows 10 Enterprise", "10.0 (19045)"),
    ]
    assert samba_dc.ldbadd("\n".join(records)) == 5
    return OU


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """Serve the two lab hosts the directory names."""
    work = tmp_path_factory.mktemp("ldap-lab")
    estate = work / "estate.yaml"
    estate.write_text(ESTATE, encoding="utf-8")
    with start_lab(estate, work / "lab") as running:
        yield running


def ldap_block(samba_dc: SambaDC, ca_file: Path | None = None) -> str:
    """Return the `sources:` entry of the directory's test OU (LDAPS, simple bind)."""
    return (
        f"  - {{type: ldap, url: '{samba_dc.ldaps_url}', ca_file: '{ca_file or samba_dc.ca_path}', auth: simple,\n"
        f"     username: 'Administrator@{samba_dc.realm}', base: '{OU}'}}\n"
    )


def env_for(samba_dc: SambaDC, tmp_path: Path) -> dict[str, str]:
    """Return the CLI's environment: the lab's account, the directory's password, a private state folder."""
    return {**LAB_CREDS, ENV_PASSWORD: samba_dc.admin_password, "XDG_STATE_HOME": str(tmp_path / "state")}


def test_show_lists_the_directory_s_hosts_with_os_facts_and_the_skipped_counts(
    samba_dc: SambaDC, directory: str, tmp_path: Path
) -> None:
    inventory = tmp_path / "ad.yaml"
    inventory.write_text("sources:\n" + ldap_block(samba_dc), encoding="utf-8")
    env = env_for(samba_dc, tmp_path)

    proc = run_cli("inventory", "show", "-i", str(inventory), "-f", "json", env=env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["skipped"] == {"disabled": 1, "no_dns_host_name": 1}
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert sorted(hosts) == ["nat01.lab.test", "nat02.lab.test"]  # LDAP returns entries in no set order
    nat01 = hosts["nat01.lab.test"]
    assert (nat01["address"], nat01["port"], nat01["scheme"]) == ("nat01.lab.test", 5985, "http")
    assert nat01["os"] == {"version": "10.0.19045", "caption": "Windows 10 Enterprise", "from": samba_dc.ldaps_url}
    assert nat01["source"] == {"type": "ldap", "name": samba_dc.ldaps_url, "entry": f"CN=NAT01,{OU}"}
    assert nat01["tags"] == {"os_caption": "Windows 10 Enterprise", "ou": "Invsources"}
    assert doc["sources"] == [
        {"type": "ldap", "name": samba_dc.ldaps_url, "hosts": 2, "skipped": {"disabled": 1, "no_dns_host_name": 1}}
    ]
    assert samba_dc.admin_password not in proc.stdout + proc.stderr

    table = run_cli("inventory", "show", "-i", str(inventory), env=env)
    assert table.returncode == 0, table.stderr
    assert f"source {samba_dc.ldaps_url}: 2 hosts, skipped 1 disabled, 1 no_dns_host_name" in table.stdout
    assert "10.0.19045" in table.stdout and "nat02.lab.test" in table.stdout


def test_a_directory_the_scanner_cannot_trust_is_an_exit_2_error(
    samba_dc: SambaDC, directory: str, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(issue_certificates(["dc1.lab.test"]).ca)
    inventory = tmp_path / "ad.yaml"
    inventory.write_text("sources:\n" + ldap_block(samba_dc, other_ca), encoding="utf-8")
    proc = run_cli("scan", "-i", str(inventory), "--no-history", env=env_for(samba_dc, tmp_path))
    assert proc.returncode == ExitCode.USAGE and proc.stdout == ""
    head = f"natt-audit: error: {inventory}:2:5: ldap source {samba_dc.ldaps_url} failed (tls_verify)"
    assert proc.stderr.startswith(head)


def scan(inventory: Path, out: Path, env: dict[str, str]) -> dict[str, Any]:
    """Scan with the real CLI; return the JSON report."""
    proc = run_cli("scan", "-i", str(inventory), "-f", "json", "-o", str(out), "--host-timeout", "10", env=env)
    assert proc.returncode in (ExitCode.OK, ExitCode.FINDINGS), proc.stderr
    report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return report


def test_a_scan_of_directory_hosts_uses_the_directory_s_version_and_reports_a_disagreement(
    samba_dc: SambaDC, directory: str, lab: RunningLab, tmp_path: Path
) -> None:
    inventory = tmp_path / "ad.yaml"
    inventory.write_text(
        "sources:\n" + ldap_block(samba_dc) + f"  - {{type: file, path: '{lab.inventory}'}}\n", encoding="utf-8"
    )
    env = env_for(samba_dc, tmp_path)
    composed = scan(inventory, tmp_path / "composed.json", env)
    plain = scan(lab.inventory, tmp_path / "plain.json", env)

    hosts = {h["name"]: h for h in composed["hosts"]}
    before = {h["name"]: h for h in plain["hosts"]}
    assert list(hosts) == list(before) == ["nat01.lab.test", "nat02.lab.test"]
    # nat01: no VERSION in the CHALLENGE; the directory's 10.0.19045 spares the WQL read (4 requests, not 5).
    assert hosts["nat01.lab.test"]["os"]["source"] == "inventory"
    assert hosts["nat01.lab.test"]["os"]["version"] == "10.0.19045"
    assert (hosts["nat01.lab.test"]["requests"], before["nat01.lab.test"]["requests"]) == (4, 5)
    assert before["nat01.lab.test"]["os"]["source"] == "wmi"
    # nat02: the host's CHALLENGE says 6.1; it is authoritative, and the disagreement is counted.
    assert hosts["nat02.lab.test"]["os"]["source"] == "ntlm_challenge"
    assert hosts["nat02.lab.test"]["os"]["version"] == "6.1.7601"
    assert hosts["nat02.lab.test"]["tags"] == {"os_caption": "Windows Server 2019 Standard", "ou": "Invsources"}
    for name in hosts:
        assert hosts[name]["status"] == before[name]["status"]
        assert hosts[name]["setting"] == before[name]["setting"]
    assert composed["inventory"] == {
        "sources": [
            {"type": "ldap", "name": samba_dc.ldaps_url, "hosts": 2,
             "skipped": {"disabled": 1, "no_dns_host_name": 1}},
            {"type": "file", "name": f"file:{lab.inventory}", "hosts": 2, "skipped": {}},
        ],
        "os_version_disagreements": 1,
    }  # fmt: skip
    assert plain["inventory"] is None
