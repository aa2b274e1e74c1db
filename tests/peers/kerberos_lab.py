"""A lab estate whose hosts are members of the Samba DC's domain: FQDN names, HTTP/ SPNs, a keytab.

`kerberos_lab(dc, workdir)` registers HTTP/<fqdn> for every host on one service account (one
ldbmodify), exports that account's keytab, creates the scan account (the same name and password
the lab's NTLM store has, so negotiate can fall back), and serves the estate with
`natt-audit lab serve --keytab`, as docs/lab.md#kerberos describes. Hosts:

- `kws-01.lab.test` .. `kws-NN.lab.test`: ordinary Windows 10 hosts (NTLM and Kerberos);
- `ntlm-off.lab.test`: `ntlm: disabled`, only Kerberos is accepted;
- `tls-strict.lab.test`: HTTPS with `cbt: strict` (channel binding required);
- `nospn.lab.test`: a host whose SPN is not registered in the domain.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.peers.lab import RunningLab, start_lab
from tests.peers.samba_dc import DNS_DOMAIN, SambaDC, User

SERVICE_ACCOUNT = "natt-lab-http"
SERVICE_PASSWORD = "Natt-Lab-Http-Passw0rd!"  # test only
SCAN_USER = "kaudit"
SCAN_PASSWORD = "Kaudit-Passw0rd!"  # test only; also the lab's NTLM account LAB\kaudit
HOSTS = 22
NTLM_OFF = f"ntlm-off.{DNS_DOMAIN}"
TLS_STRICT = f"tls-strict.{DNS_DOMAIN}"
NO_SPN = f"nospn.{DNS_DOMAIN}"


def member_names(count: int = HOSTS) -> list[str]:
    """Return the ordinary hosts' names, kws-01.lab.test ..."""
    return [f"kws-{n:02d}.{DNS_DOMAIN}" for n in range(1, count + 1)]


@dataclass
class KerberosLab:
    """The running lab, the DC, the scan account and where the lab's keytab is."""

    lab: RunningLab
    dc: SambaDC
    user: User
    keytab: Path
    stats: Path

    def inventory(self, path: Path, names: Sequence[str], transport: str, **fields: str) -> Path:
        """Write an inventory of some lab hosts with one transport (and extra fields); return its path."""
        data = yaml.safe_load(self.lab.inventory.read_text(encoding="utf-8"))
        by_name = {host["name"]: host for host in data["hosts"]}
        hosts = []
        for name in names:
            host = {k: v for k, v in by_name[name].items() if k != "transport"}
            host.update({"transport": transport, **fields})
            hosts.append(host)
        path.write_text(yaml.safe_dump({"hosts": hosts}, sort_keys=False), encoding="utf-8")
        return path

    def counters(self) -> dict[str, int]:
        """Return the lab's counters now (SIGUSR1 makes it write them to --stats-out)."""
        self.stats.unlink(missing_ok=True)
        self.lab.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not self.stats.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the lab did not write its counters within 10 s of SIGUSR1")
            time.sleep(0.02)
        counters: dict[str, int] = json.loads(self.stats.read_text(encoding="utf-8"))
        return counters


def estate(accounts: Sequence[tuple[str, str]], names: Sequence[str]) -> dict[str, object]:
    """Return the estate: the member hosts plus the NTLM-disabled, strict-CBT and SPN-less ones."""
    hosts: list[dict[str, object]] = [{"name": name} for name in names]
    hosts += [
        {"name": NTLM_OFF, "ntlm": "disabled"},
        {"name": TLS_STRICT, "scheme": "https", "cbt": "strict"},
        {"name": NO_SPN},
    ]
    return {
        "accounts": [{"username": user, "password": password} for user, password in accounts],
        "defaults": {"os": "win10", "wmi_ms": 0},
        "hosts": hosts,
    }


@contextlib.contextmanager
def kerberos_lab(dc: SambaDC, workdir: Path, *, count: int = HOSTS) -> Iterator[KerberosLab]:
    """Register the hosts' SPNs on one account, export its keytab and serve the estate with it."""
    workdir.mkdir(parents=True, exist_ok=True)
    dc.create_user(SERVICE_ACCOUNT, SERVICE_PASSWORD)
    names = member_names(count)
    dc.add_spns(SERVICE_ACCOUNT, [f"HTTP/{name}" for name in [*names, NTLM_OFF, TLS_STRICT]])
    keytab = dc.export_keytab(workdir / "lab-http.keytab", SERVICE_ACCOUNT)
    user = dc.create_user(SCAN_USER, SCAN_PASSWORD)
    estate_path = workdir / "estate.yaml"
    estate_path.write_text(
        yaml.safe_dump(estate([(f"{dc.domain}\\{SCAN_USER}", SCAN_PASSWORD)], names)), encoding="utf-8"
    )
    stats = workdir / "stats.json"
    # The lab inherits KRB5_CONFIG (the DC's realm); its keytab is set only inside it.
    env_before = os.environ.get("KRB5_CONFIG")
    os.environ["KRB5_CONFIG"] = str(dc.krb5_conf)
    try:
        with start_lab(
            estate_path, workdir / "lab", extra_args=["--keytab", str(keytab), "--stats-out", str(stats)]
        ) as lab:
            yield KerberosLab(lab, dc, user, keytab, stats)
    finally:
        if env_before is None:
            os.environ.pop("KRB5_CONFIG", None)
        else:
            os.environ["KRB5_CONFIG"] = env_before
