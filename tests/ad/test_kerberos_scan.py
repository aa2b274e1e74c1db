"""`natt-audit scan` with Kerberos against the real Samba KDC and lab hosts of its domain, run as a user runs it.

Every scan is the real CLI in a child process (tests/support/cliproc.py) with its own KRB5_TRACE, so
the Kerberos exchanges it made are counted from MIT krb5's own trace: one AS exchange per scan, one
TGS exchange per host. The lab's counters (SIGUSR1 -> --stats-out) show whether any host was contacted.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.peers.kerberos_lab import NO_SPN, NTLM_OFF, SCAN_PASSWORD, SCAN_USER, KerberosLab, member_names
from tests.peers.samba_dc import LockoutPolicy, SambaDC
from tests.support.cliproc import CLI, REPO, cli_env

AS_EXCHANGE = re.compile(r"Getting initial credentials for ")
TGS_EXCHANGE = re.compile(r"TGS request result: ")


@dataclass
class Scan:
    """One finished scan: the process, its report (if written) and its Kerberos trace."""

    proc: subprocess.CompletedProcess[str]
    report: dict[str, Any] | None
    trace: str

    @property
    def as_exchanges(self) -> int:
        return len(AS_EXCHANGE.findall(self.trace))

    @property
    def tgs_exchanges(self) -> int:
        return len(TGS_EXCHANGE.findall(self.trace))

    def host(self, name: str) -> dict[str, Any]:
        assert self.report is not None, self.proc.stderr
        return next(h for h in self.report["hosts"] if h["name"] == name)


def scan(
    tmp_path: Path, inventory: Path, *args: str, env: Mapping[str, str] | None = None, prefix: Sequence[str] = ()
) -> Scan:
    """Run `natt-audit scan` (no history, JSON report, no terminal) with KRB5_TRACE; return what it did."""
    trace = tmp_path / f"krb5-trace-{len(list(tmp_path.glob('krb5-trace-*')))}.log"
    report = tmp_path / "report.json"
    report.unlink(missing_ok=True)
    proc = subprocess.run(
        [*prefix, *CLI, "scan", "-i", str(inventory), "--no-history", "-f", "json", "-o", str(report), *args],
        env=cli_env({"KRB5_TRACE": str(trace), **(env or {})}),
        stdin=subprocess.DEVNULL,  # never a terminal: the scan must not need to prompt
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=REPO,
    )
    text = trace.read_text(encoding="utf-8", errors="replace") if trace.exists() else ""
    data = json.loads(report.read_text(encoding="utf-8")) if report.exists() else None
    return Scan(proc, data, text)


def password_env(user: str = f"LAB\\{SCAN_USER}", password: str = SCAN_PASSWORD) -> dict[str, str]:
    return {"NATT_AUDIT_USERNAME": user, "NATT_AUDIT_PASSWORD": password}


@pytest.fixture
def lockout(samba_dc: SambaDC) -> Iterator[LockoutPolicy]:
    """Lock an account after 3 bad passwords for one test; lockout off again afterwards."""
    policy = samba_dc.set_lockout(threshold=3, duration_minutes=30, reset_minutes=30)
    try:
        yield policy
    finally:
        samba_dc.set_lockout(threshold=0, duration_minutes=30, reset_minutes=30)


def test_a_password_scan_of_22_hosts_makes_one_as_exchange_and_leaves_the_users_ccache_alone(
    krb_lab: KerberosLab, samba_dc: SambaDC, tmp_path: Path, ccache: Path
) -> None:
    other = samba_dc.create_user("kother", "Kother-Passw0rd!")
    assert samba_dc.kinit(other.principal, other.password, ccache).ok
    before = ccache.read_bytes()
    names = member_names()
    inventory = krb_lab.inventory(tmp_path / "hosts.yaml", names, "kerberos")

    done = scan(tmp_path, inventory, env=password_env())

    assert done.proc.returncode == 0, done.proc.stderr
    assert done.report is not None and done.report["summary"]["coverage"] == 1.0
    assert done.as_exchanges == 1  # one TGT for the scan, not one per host
    assert done.tgs_exchanges == len(names)  # one service ticket per host
    assert {done.host(name)["requests"] for name in names} == {4}
    assert ccache.read_bytes() == before  # the user's own cache was not touched
    assert SCAN_PASSWORD not in done.proc.stderr + done.trace


def test_a_kinit_ticket_cache_scans_without_a_password_or_a_prompt(
    krb_lab: KerberosLab, tmp_path: Path, ccache: Path
) -> None:
    assert krb_lab.dc.kinit(krb_lab.user.principal, SCAN_PASSWORD, ccache).ok
    before = ccache.read_bytes()
    names = member_names()
    inventory = krb_lab.inventory(tmp_path / "hosts.yaml", names, "kerberos")

    done = scan(tmp_path, inventory)  # no NATT_AUDIT_USERNAME, no password, no terminal

    assert done.proc.returncode == 0, done.proc.stderr
    assert done.as_exchanges == 0  # the cache's TGT is used
    assert done.tgs_exchanges == len(names)
    assert ccache.read_bytes() == before  # read, never written: the service tickets stayed in the scan's cache


def test_without_a_ticket_cache_or_a_password_the_scan_says_how_to_give_credentials(
    krb_lab: KerberosLab, tmp_path: Path
) -> None:
    inventory = krb_lab.inventory(tmp_path / "hosts.yaml", member_names(2), "kerberos")
    done = scan(tmp_path, inventory)  # the test's KRB5CCNAME names a cache that does not exist
    assert done.proc.returncode == 2
    assert "kinit" in done.proc.stderr and "--keytab" in done.proc.stderr
    assert krb_lab.counters()["connections"] >= 0


def test_a_client_keytab_from_the_option_or_the_config_file_logs_on_once(
    krb_lab: KerberosLab, samba_dc: SambaDC, tmp_path: Path
) -> None:
    user = samba_dc.create_user("kkeytab", "Kkeytab-Passw0rd!")
    keytab = samba_dc.export_keytab(tmp_path / "client.keytab", user.name)
    keytab.chmod(0o600)
    names = member_names()
    inventory = krb_lab.inventory(tmp_path / "hosts.yaml", names, "kerberos")

    by_option = scan(tmp_path, inventory, "--keytab", str(keytab))  # the principal is the keytab's
    assert by_option.proc.returncode == 0, by_option.proc.stderr
    assert by_option.as_exchanges == 1
    assert by_option.tgs_exchanges == len(names)

    config = tmp_path / "natt-audit.toml"
    config.write_text(f'[credentials]\nusername = "kkeytab@LAB.TEST"\nkeytab = "{keytab}"\n', encoding="utf-8")
    small = krb_lab.inventory(tmp_path / "three.yaml", names[:3], "kerberos")
    by_config = scan(tmp_path, small, "--config", str(config))
    assert by_config.proc.returncode == 0, by_config.proc.stderr
    assert by_config.as_exchanges == 1


def test_a_wrong_password_costs_one_failed_preauthentication_and_contacts_no_host(
    krb_lab: KerberosLab, samba_dc: SambaDC, tmp_path: Path, ccache: Path, lockout: LockoutPolicy
) -> None:
    assert lockout.threshold == 3
    user = samba_dc.create_user("kwrongpw", "Kwrongpw-Passw0rd!")
    inventory = krb_lab.inventory(tmp_path / "hosts.yaml", member_names(), "kerberos")
    before = krb_lab.counters()

    for _ in range(2):  # two nightly runs with the wrong password: still below the threshold
        done = scan(tmp_path, inventory, env=password_env(f"LAB\\{user.name}", "Wrong-Passw0rd!"))
        assert done.proc.returncode == 2, done.proc.stderr
        assert "preauth_failed" in done.proc.stderr and "KDC_ERR_PREAUTH_FAILED" in done.proc.stderr
        assert "no host was contacted" in done.proc.stderr
        assert done.as_exchanges == 1
        assert done.report is None
        assert "Wrong-Passw0rd!" not in done.proc.stderr

    assert krb_lab.counters()["connections"] == before["connections"]  # the lab saw nobody
    assert samba_dc.kinit(user.principal, user.password, ccache).ok  # the account was not locked


@pytest.mark.parametrize("state", ["locked", "disabled"])
def test_a_locked_or_disabled_account_is_client_revoked_before_any_host(
    krb_lab: KerberosLab, samba_dc: SambaDC, tmp_path: Path, ccache: Path, lockout: LockoutPolicy, state: str
) -> None:
    user = samba_dc.create_user(f"kscan-{state}", f"Kscan-{state}-Passw0rd!")
    if state == "locked":
        for _ in range(lockout.threshold):
            samba_dc.kinit(user.principal, "Wrong-Passw0rd!", ccache)
    else:
        samba_dc.disable_user(user.name)
    inventory = krb_lab.inventory(tmp_path / "hosts.yaml", member_names(), "kerberos")
    before = krb_lab.counters()

    done = scan(tmp_path, inventory, env=password_env(f"{user.name}@lab.test", user.password))

    assert done.proc.returncode == 2, done.proc.stderr
    assert "client_revoked" in done.proc.stderr and "locked out or disabled" in done.proc.stderr
    assert f"{user.name}@LAB.TEST" in done.proc.stderr  # the realm is upper-cased, as AD spells it
    assert krb_lab.counters()["connections"] == before["connections"]


def test_an_unknown_account_is_client_unknown(krb_lab: KerberosLab, tmp_path: Path) -> None:
    inventory = krb_lab.inventory(tmp_path / "hosts.yaml", member_names(2), "kerberos")
    done = scan(tmp_path, inventory, env=password_env("LAB\\nobody-here", "Any-Passw0rd!"))
    assert done.proc.returncode == 2
    assert "client_unknown" in done.proc.stderr and "KDC_ERR_C_PRINCIPAL_UNKNOWN" in done.proc.stderr


def test_a_host_whose_spn_is_not_registered_is_spn_unknown_and_the_others_are_read(
    krb_lab: KerberosLab, tmp_path: Path
) -> None:
    names = [*member_names(3), NO_SPN]
    done = scan(tmp_path, krb_lab.inventory(tmp_path / "hosts.yaml", names, "kerberos"), env=password_env())
    assert done.proc.returncode == 3, done.proc.stderr  # incomplete: one host unread
    error = done.host(NO_SPN)["error"]
    assert (error["stage"], error["reason"]) == ("auth", "spn_unknown")
    assert f"HTTP/{NO_SPN}" in error["message"] and "setspn" in error["message"]
    assert all(done.host(name)["error"] is None for name in names[:3])


def test_an_ntlm_disabled_host_needs_kerberos_and_negotiate_reads_it(krb_lab: KerberosLab, tmp_path: Path) -> None:
    ntlm = scan(tmp_path, krb_lab.inventory(tmp_path / "ntlm.yaml", [NTLM_OFF], "ntlm"), env=password_env())
    assert ntlm.proc.returncode == 3
    error = ntlm.host(NTLM_OFF)["error"]
    assert (error["stage"], error["reason"]) == ("auth", "ntlm_refused")
    assert "kerberos or negotiate" in error["message"]

    negotiate = scan(
        tmp_path, krb_lab.inventory(tmp_path / "negotiate.yaml", [NTLM_OFF], "negotiate"), env=password_env()
    )
    assert negotiate.proc.returncode == 0, negotiate.proc.stderr
    assert negotiate.as_exchanges == 1


def test_an_unreachable_kdc_stops_kerberos_but_negotiate_may_use_ntlm(krb_lab: KerberosLab, tmp_path: Path) -> None:
    nowhere = tmp_path / "krb5-nowhere.conf"
    text = krb_lab.dc.krb5_conf.read_text(encoding="utf-8")
    # Port 9 (discard) on loopback: nothing listens, every KDC request is refused at once.
    nowhere.write_text(text.replace("kdc = 127.0.0.1", "kdc = 127.0.0.1:9"), encoding="utf-8")
    env = {**password_env(), "KRB5_CONFIG": str(nowhere)}
    names = member_names(3)

    kerberos = scan(tmp_path, krb_lab.inventory(tmp_path / "k.yaml", names, "kerberos"), env=env)
    assert kerberos.proc.returncode == 2
    assert "kdc_unreachable" in kerberos.proc.stderr and "port 88" in kerberos.proc.stderr

    negotiate = krb_lab.inventory(tmp_path / "n.yaml", names, "negotiate")
    fallback = scan(tmp_path, negotiate, env=env)
    assert fallback.proc.returncode == 0, fallback.proc.stderr
    assert "uses NTLM for every host" in fallback.proc.stderr
    assert {fallback.host(name)["os"]["source"] for name in names} == {"ntlm_challenge"}

    strict = scan(tmp_path, negotiate, "--no-ntlm-fallback", env=env)
    assert strict.proc.returncode == 2
    assert "kdc_unreachable" in strict.proc.stderr


def test_a_clock_an_hour_ahead_of_the_kdc_is_clock_skew(krb_lab: KerberosLab, tmp_path: Path) -> None:
    # kdc_timesync = 0: MIT krb5 would otherwise adopt the KDC's time after the first skew error
    # (krb5.conf(5)) and hide the problem; faketime (libfaketime) moves this scan's clock only.
    conf = tmp_path / "krb5-nosync.conf"
    text = krb_lab.dc.krb5_conf.read_text(encoding="utf-8")
    conf.write_text(text.replace("[libdefaults]\n", "[libdefaults]\n\tkdc_timesync = 0\n"), encoding="utf-8")
    inventory = krb_lab.inventory(tmp_path / "hosts.yaml", member_names(2), "kerberos")
    env = {**password_env(), "KRB5_CONFIG": str(conf), "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    before = krb_lab.counters()
    done = scan(tmp_path, inventory, env=env, prefix=["faketime", "-f", "+1h"])
    assert done.proc.returncode == 2, done.proc.stderr
    assert "clock_skew" in done.proc.stderr and "KRB_AP_ERR_SKEW" in done.proc.stderr
    assert "NTP" in done.proc.stderr
    assert krb_lab.counters()["connections"] == before["connections"]


@pytest.mark.parametrize("transport", ["kerberos", "negotiate"])
def test_an_rc4_only_client_seals_with_rc4_and_reads_every_host(
    krb_lab: KerberosLab, samba_dc: SambaDC, tmp_path: Path, transport: str
) -> None:
    # A client whose krb5.conf permits only RC4-HMAC gets RC4 tickets and session keys from the DC,
    # so every message is sealed with RFC 4757 tokens: one byte of padding that OriginalContent
    # counts in both directions (MS-WSMV 2.2.9.1.1.2.2, scanner/core/gsswrap.py).
    rc4_only = "\tpermitted_enctypes = rc4-hmac\n\tdefault_tgs_enctypes = rc4-hmac\n\tdefault_tkt_enctypes = rc4-hmac\n"
    conf = tmp_path / "krb5-rc4.conf"
    conf.write_text(samba_dc.krb5_conf.read_text().replace("[libdefaults]\n", "[libdefaults]\n" + rc4_only))
    names = member_names()[:4]
    inventory = krb_lab.inventory(tmp_path / "hosts.yaml", names, transport)

    done = scan(tmp_path, inventory, env={**password_env(), "KRB5_CONFIG": str(conf)})

    assert done.proc.returncode == 0, done.proc.stderr
    assert done.report is not None and done.report["summary"]["coverage"] == 1.0
    session_keys = re.findall(r"TGS reply is for .* with session key ([\w-]+)/", done.trace)
    subkeys = re.findall(r"Read AP-REP, .* subkey ([\w-]+)/", done.trace)
    assert session_keys == ["rc4-hmac"] * len(names)
    assert subkeys == ["rc4-hmac"] * len(names)  # what seals the messages
    assert {done.host(name)["requests"] for name in names} == {4}
