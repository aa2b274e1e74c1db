"""A site worker takes its account as `scan` does: a password, a keytab, or a `kinit` ticket cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.engine.inputs import scan_credentials
from scanner.inputs.config import load_config
from scanner.inputs.credentials import CredentialError
from tests.peers.samba_dc import SambaDC


def test_a_worker_without_a_password_uses_the_kinit_ticket_cache(samba_dc: SambaDC, ccache: Path) -> None:
    user = samba_dc.create_user("kworker", "Kworker-Passw0rd!")
    config = load_config(path=None, environ={}, flags={}).config
    environ = {"KRB5CCNAME": f"FILE:{ccache}"}
    with pytest.raises(CredentialError):  # no ticket yet: nothing to log on with, and no prompt
        scan_credentials(config, environ, stdin_isatty=False, ticket_cache_allowed=True)
    assert samba_dc.kinit(user.principal, user.password, ccache).ok
    credentials = scan_credentials(config, environ, stdin_isatty=False, ticket_cache_allowed=True)
    assert credentials.password is None and credentials.ccache == f"FILE:{ccache}"
    assert credentials.username.lower().startswith("kworker")
    # Without the worker's permission the same call asks for a password, as `scan` of NTLM hosts does.
    with pytest.raises(CredentialError):
        scan_credentials(config, environ, stdin_isatty=False)
