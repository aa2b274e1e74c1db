"""The key of a site account's shared logon state names the account, never a secret (docs/sites.md#reliability)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pydantic import SecretStr

from scanner.core.models import Credentials
from scanner.engine.sites.logonstate import account_id


def _password(name: str, password: str = "Svc-Passw0rd!") -> Credentials:
    return Credentials(username=name, password=SecretStr(password))


def test_one_account_however_its_name_is_spelled() -> None:
    # Lockout counts per account: workers naming it differently must still share one breaker.
    names = ("PARIS\\svc-natt", "svc-natt@PARIS.EXAMPLE", "SVC-NATT", "paris\\Svc-Natt")
    assert len({account_id(_password(name)) for name in names}) == 1


def test_the_key_depends_on_the_account_only_and_does_not_show_its_name() -> None:
    key = account_id(_password("PARIS\\svc-natt"))
    assert key == account_id(_password("PARIS\\svc-natt", "a stale password"))
    assert key != account_id(_password("PARIS\\svc-other"))
    assert "svc" not in key and len(key) == 24 and int(key, 16) >= 0


def test_a_keytab_without_a_name_is_the_account_of_its_first_principal(tmp_path: Path) -> None:
    keytab = tmp_path / "svc.keytab"
    # ktutil (krb5-user) writes a client keytab; the key's password goes on stdin, never in argv.
    script = (
        f"addent -password -p svc-natt@LAB.TEST -k 1 -e aes256-cts-hmac-sha1-96\nSvc-Passw0rd!\nwkt {keytab}\nquit\n"
    )
    subprocess.run(["ktutil"], input=script.encode(), capture_output=True, timeout=30, check=True)
    assert keytab.exists()
    assert account_id(Credentials(username="", keytab=str(keytab))) == account_id(_password("LAB\\svc-natt"))
