"""Kerberos failures are classified from krb5 error codes (MIT krb5.h), wherever the code comes from."""

from __future__ import annotations

from pathlib import Path

import gssapi.raw
import krb5
import pytest
from spnego.exceptions import SpnegoError

from scanner.collect.wsman import kerberos
from scanner.collect.wsman.kerberos import classify, krb5_code, principal_of

# MIT krb5.h values, written out so a renamed constant in our table cannot hide a wrong number.
EXPECTED = {
    -1765328228: "kdc_unreachable",  # KRB5_KDC_UNREACH
    -1765328360: "preauth_failed",  # KRB5KDC_ERR_PREAUTH_FAILED
    -1765328366: "client_revoked",  # KRB5KDC_ERR_CLIENT_REVOKED
    -1765328347: "clock_skew",  # KRB5KRB_AP_ERR_SKEW
    -1765328378: "client_unknown",  # KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN
    -1765328377: "spn_unknown",  # KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN
}


@pytest.mark.parametrize(("code", "reason"), sorted(EXPECTED.items()))
def test_each_required_code_has_its_reason_and_advice(code: int, reason: str) -> None:
    failure = classify(code)
    assert failure.reason == reason
    assert len(failure.advice) > 40  # a sentence that says what to do


def test_an_unknown_code_is_kerberos_error_named_by_number() -> None:
    assert classify(-1765328999).reason == "kerberos_error"
    assert "-1765328999" in classify(-1765328999).name
    assert classify(None).reason == "kerberos_error"


def test_the_code_is_found_in_pykrb5_gssapi_and_pyspnego_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "krb5.conf"
    # A realm whose only KDC is loopback port 9, where nothing listens; no DNS is asked.
    conf.write_text(
        "[libdefaults]\n default_realm = NOWHERE.TEST\n dns_lookup_kdc = false\n dns_lookup_realm = false\n"
        "[realms]\n NOWHERE.TEST = {\n  kdc = 127.0.0.1:9\n }\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("KRB5_CONFIG", str(conf))
    context = krb5.init_context()
    options = krb5.get_init_creds_opt_alloc(context)
    with pytest.raises(krb5.Krb5Error) as raised:
        krb5.get_init_creds_password(context, krb5.parse_name_flags(context, b"user"), options, password=b"x")
    assert krb5_code(raised.value) == kerberos.KRB5_KDC_UNREACH
    assert classify(krb5_code(raised.value)).reason == "kdc_unreachable"
    # GSSAPI's minor status is the unsigned form of krb5's negative code.
    gss = gssapi.raw.GSSError(851968, (1 << 32) + kerberos.KDC_ERR_S_PRINCIPAL_UNKNOWN)
    assert krb5_code(gss) == kerberos.KDC_ERR_S_PRINCIPAL_UNKNOWN
    wrapped = SpnegoError(base_error=gss, context_msg="Processing security token")
    assert krb5_code(wrapped) == kerberos.KDC_ERR_S_PRINCIPAL_UNKNOWN
    outer = RuntimeError("negotiate gave up")
    outer.__cause__ = wrapped
    assert krb5_code(outer) == kerberos.KDC_ERR_S_PRINCIPAL_UNKNOWN
    assert krb5_code(ValueError("no code")) is None


def test_usernames_become_principals() -> None:
    assert principal_of("CORP\\svc-audit") == "svc-audit"  # krb5.conf's default_realm
    assert principal_of("svc-audit@corp.example.com") == "svc-audit@CORP.EXAMPLE.COM"
    assert principal_of("svc-audit") == "svc-audit"
