"""The session's Samba AD domain controller, and a private Kerberos environment for every test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.kerberos_lab import KerberosLab, kerberos_lab
from tests.peers.samba_dc import SambaDC, samba_dc_session


@pytest.fixture(scope="session")
def samba_dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaDC]:
    """Run one real Samba AD DC (LAB.TEST on 127.0.0.1) for the whole test session."""
    with samba_dc_session(tmp_path_factory.mktemp("samba-dc")) as dc:
        yield dc


@pytest.fixture(autouse=True)
def ccache(samba_dc: SambaDC, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point KRB5_CONFIG at the DC's krb5.conf and give this test its own KRB5CCNAME; return the ccache path."""
    path = tmp_path / "krb5cc"
    monkeypatch.setenv("KRB5_CONFIG", str(samba_dc.krb5_conf))
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{path}")
    monkeypatch.delenv("KRB5_KTNAME", raising=False)
    monkeypatch.delenv("KRB5_CLIENT_KTNAME", raising=False)
    return path


@pytest.fixture(scope="session")
def krb_lab(samba_dc: SambaDC, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KerberosLab]:
    """Serve lab hosts that are members of the DC's domain (tests/peers/kerberos_lab.py), for the session."""
    with kerberos_lab(samba_dc, tmp_path_factory.mktemp("krb-lab")) as running:
        yield running
