"""The ldap source's configuration and value parsing, without a directory."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from scanner.inputs.sources import SourceError
from scanner.inputs.sources.ldap import (
    ENV_PASSWORD,
    LdapSource,
    LdapSourceConfig,
    _Collector,
    filetime,
    os_version,
    ou_path,
    parent_dn,
    split_dn,
)
from scanner.inputs.sources.ldapfilter import FilterSyntaxError, check_filter

BASE = {"type": "ldap", "url": "ldap://dc1.lab.test", "base": "DC=lab,DC=test"}
SIMPLE = {"url": "ldaps://dc1.lab.test", "auth": "simple"}


def config(**fields: Any) -> LdapSourceConfig:
    """Return a validated configuration: BASE with fields changed."""
    return LdapSourceConfig.model_validate({**BASE, **fields})


def refusal(**fields: Any) -> str:
    """Return the validation error for BASE with fields changed."""
    with pytest.raises(ValidationError) as refused:
        config(**fields)
    return str(refused.value)


def test_a_password_in_the_configuration_is_refused_saying_where_it_goes_and_never_echoed() -> None:
    for key in ("password", "Password", "bind_password", "passwd"):
        message = refusal(auth="simple", username="svc", **{key: "Hunter2-Secret!"})
        assert f"{key!r} is refused" in message
        assert ENV_PASSWORD in message and "password_file" in message
        assert "Hunter2-Secret!" not in message


def test_unknown_keys_are_refused_without_echoing_the_input() -> None:
    message = refusal(pasword_typo="Hunter2-Secret!")
    assert "pasword_typo" in message and "Extra inputs are not permitted" in message
    assert "Hunter2-Secret!" not in message


def test_a_simple_bind_over_plain_ldap_is_refused_at_load() -> None:
    message = refusal(url="ldap://dc1.lab.test", auth="simple", username="svc")
    assert "auth: simple over ldap:// would send the password in clear text" in message
    assert config(**SIMPLE, username="svc").auth == "simple"


def test_kerberos_to_an_address_needs_the_dc_host_name() -> None:
    assert "give server_name" in refusal(url="ldap://127.0.0.1")
    assert config(url="ldap://127.0.0.1", server_name="dc1.lab.test").server_name == "dc1.lab.test"
    assert "server_name 'dc1 lab'" in refusal(url="ldap://127.0.0.1", server_name="dc1 lab")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "http://dc1"}, "url must start with ldaps:// or ldap://"),
        ({"url": "ldaps://svc:pw@dc1"}, "url must not hold user info"),
        ({"url": "ldaps://dc1/DC=lab,DC=test"}, "url is the DC only"),
        ({"url": "ldaps://dc1:99999"}, "url has an invalid port"),
        ({"url": "ldap://dc1", "ca_file": "ca.pem"}, "ca_file is only used with ldaps://"),
        ({"url": "ldaps://dc1", "auth": "kerberos"}, "auth: kerberos is supported over ldap://"),
        ({"password_file": "pw"}, "password_file is only used with auth: simple"),
        ({"page_size": 1001}, "less than or equal to 1000"),
        ({"page_size": 0}, "greater than or equal to 1"),
        ({"max_logon_age_days": 7}, "greater than or equal to 14"),
        ({"scope": "subtree"}, "'base', 'one' or 'sub'"),
        ({"auth": "ntlm"}, "'kerberos' or 'simple'"),
        ({"filter": "operatingSystem=Windows*"}, "filter is not an LDAP filter (RFC 4515): expected '('"),
        ({"filter": "(cn=a)(cn=b)"}, "unexpected text after the filter"),
        ({"base": "lab.test"}, "base is not a DN (RFC 4514)"),
        ({"defaults": {"transport": "basic"}}, "transport basic requires scheme https"),
        ({"defaults": {"port": 70000}}, "less than or equal to 65535"),
        ({"groups": "yes"}, "valid boolean"),
    ],
)
def test_bad_configurations_are_refused_with_a_specific_message(fields: dict[str, Any], message: str) -> None:
    assert message in refusal(**fields)


@pytest.mark.parametrize(
    "text",
    [
        "(cn=a)",
        "(&(objectClass=computer)(!(cn=x)))",
        "(|(operatingSystem=Windows*)(operatingSystem=*Server*))",
        "(userAccountControl:1.2.840.113556.1.4.803:=2)",
        "(cn:dn:=Paris)",
        "(cn:=x)",
        "(:1.2.3:=x)",
        "(cn=a\\29b)",
        "(cn=*)",
        "(cn>=m)",
        "(description=caf\\c3\\a9)",
    ],
)
def test_rfc_4515_filters_parse(text: str) -> None:
    check_filter(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("(cn=a", "expected ')'"),
        ("((cn=a))", "expected an attribute"),
        ("(=a)", "an attribute name is missing"),
        ("(cn=a(b)", "must be escaped"),
        ("(cn~=a*)", "'*' must be escaped"),
        ("(cn=a\\zz)", "two hex digits"),
        ("(&)", "needs at least one filter"),
        ("(cn::=x)", "expected a matching rule"),
        ("(:=x)", "needs an attribute or a matching rule"),
        ("(cn=a))", "unexpected text after the filter"),
        ("(" * 40 + "cn=a" + ")" * 40, "expected an attribute"),
        ("(&" * 40 + "(cn=a)" + ")" * 40, "nested deeper than 32 levels"),
    ],
)
def test_broken_filters_are_refused_with_the_position(text: str, message: str) -> None:
    with pytest.raises(FilterSyntaxError, match=r"at position|empty") as refused:
        check_filter(text)
    assert message in str(refused.value)


def test_the_search_filter_is_anded_with_computers() -> None:
    assert config().search_filter() == "(objectCategory=computer)"
    assert config(filter="(cn=WS*)").search_filter() == "(&(objectCategory=computer)(cn=WS*))"


@pytest.mark.parametrize(
    ("raw", "version"),
    [
        ("10.0 (19045)", "10.0.19045"),
        ("10.0 (17763)", "10.0.17763"),
        ("6.1 (7601)", "6.1.7601"),
        ("6.3 (9600)", "6.3.9600"),
        ("5.2 (3790)", "5.2.3790"),
        (" 6.1  (7601) ", "6.1.7601"),
        ("4.17.12-Debian", None),
        ("10.0", None),
        ("10.0 (19045", None),
        ("ten (1)", None),
        ("", None),
        (None, None),
        ("10.0 (١٢٣)", None),  # non-ASCII digits are garbled, not a build
    ],
)
def test_operating_system_version_becomes_a_dotted_version_or_unknown(raw: str | None, version: str | None) -> None:
    assert os_version(raw) == version


def test_dns_are_split_with_rfc_4514_escapes_undone() -> None:
    dn = "CN=Smith\\, John,OU=R\\26D\\2C Lab/2,OU=Caf\\C3\\A9,DC=lab,DC=test"
    assert split_dn(dn) == [
        ("CN", "Smith, John"), ("OU", "R&D, Lab/2"), ("OU", "Café"), ("DC", "lab"), ("DC", "test"),
    ]  # fmt: skip
    assert parent_dn(dn) == "OU=R\\26D\\2C Lab/2,OU=Caf\\C3\\A9,DC=lab,DC=test"
    assert ou_path(parent_dn(dn)) == "Café/R&D, Lab\\/2"
    assert ou_path("OU=Servers,OU=Paris,DC=lab,DC=test") == "Paris/Servers"
    assert ou_path("CN=Computers,DC=lab,DC=test") is None
    with pytest.raises(ValueError, match="has no '='"):
        split_dn("lab.test")


def test_filetime_counts_100_ns_intervals_since_1601() -> None:
    assert filetime(dt.datetime(1601, 1, 1, tzinfo=dt.UTC)) == 0
    # 2024-01-01T00:00:00Z, as Windows' FILETIME for that instant.
    assert filetime(dt.datetime(2024, 1, 1, tzinfo=dt.UTC)) == 133_485_408_000_000_000


def raw(**attributes: str) -> dict[str, list[bytes]]:
    """Return ldap3 raw attributes."""
    return {k: [v.encode()] for k, v in attributes.items()}


def test_the_collector_skips_by_reason_and_keeps_the_newest_of_duplicate_names() -> None:
    now = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    recent = str(filetime(now - dt.timedelta(days=2)))
    older = str(filetime(now - dt.timedelta(days=20)))
    collector = _Collector(config(max_logon_age_days=30), "ldaps://dc1.lab.test:636", now)
    collector.add("CN=A,OU=X,DC=lab,DC=test", raw(dNSHostName="a.lab.test", lastLogonTimestamp=older))
    collector.add("CN=A2,OU=Y,DC=lab,DC=test", raw(dNSHostName="A.lab.test.", lastLogonTimestamp=recent))
    collector.add("CN=A3,OU=Z,DC=lab,DC=test", raw(dNSHostName="a.lab.test", lastLogonTimestamp=older))
    collector.add("CN=D,DC=lab,DC=test", raw(dNSHostName="d.lab.test", userAccountControl="4098"))
    collector.add("CN=Z,DC=lab,DC=test", raw(dNSHostName="z.lab.test", lastLogonTimestamp="0"))
    collector.add(
        "CN=U,DC=lab,DC=test", raw(dNSHostName="u.lab.test", userAccountControl="garbled", lastLogonTimestamp=recent)
    )
    result = collector.result(pages=1, extra={})
    assert [h.provenance.entry for h in result.hosts] == ["CN=A2,OU=Y,DC=lab,DC=test", "CN=U,DC=lab,DC=test"]
    assert result.hosts[0].tags == {"ou": "Y"}
    assert result.skipped == {"disabled": 1, "duplicate_dns_host_name": 2, "never_logged_on": 1}


def test_a_simple_bind_reads_its_password_before_connecting_from_file_or_environment(tmp_path: Path) -> None:
    secret = tmp_path / "ldap-password"
    secret.write_text("From-File-Passw0rd!\nsecond line ignored\n")
    os.chmod(secret, 0o600)
    simple = config(**SIMPLE, username="svc@LAB.TEST", password_file="ldap-password")
    bind = LdapSource(simple, environ={}, base_dir=tmp_path).bind()
    assert bind.password is not None and bind.password.get_secret_value() == "From-File-Passw0rd!"
    assert "From-File" not in repr(bind)

    env = LdapSource(config(**SIMPLE, username="svc"), environ={ENV_PASSWORD: "From-Env!"}).bind()
    assert env.password is not None and env.password.get_secret_value() == "From-Env!"

    with pytest.raises(SourceError) as missing:
        LdapSource(config(**SIMPLE, username="svc"), environ={}).bind()
    assert missing.value.reason == "credentials" and ENV_PASSWORD in str(missing.value)

    os.chmod(secret, 0o644)
    with pytest.raises(SourceError, match="chmod 600"):
        LdapSource(simple, environ={}, base_dir=tmp_path).bind()
    with pytest.raises(SourceError, match="needs a username"):
        LdapSource(config(**SIMPLE), environ={ENV_PASSWORD: "x"}).bind()


def test_a_closed_port_is_unreachable_without_a_dc(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = LdapSource(
        config(url=f"ldaps://127.0.0.1:{port}", auth="simple", username="svc"), environ={ENV_PASSWORD: "x"}
    )
    with pytest.raises(SourceError) as failed:
        source.resolve()
    assert failed.value.reason == "unreachable"
    assert str(failed.value) == f"ldaps://127.0.0.1:{port}: connection refused by 127.0.0.1 port {port}"
