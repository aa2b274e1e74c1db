"""The DEST option table: every kind's options parse, and every refusal says which rule it broke."""

from __future__ import annotations

import pytest

from reports.export.destinations import (
    OPTIONS,
    SECRET_OPTIONS,
    Destination,
    DestinationError,
    Kind,
    OptionSpec,
    parse_destination,
    read_options,
)

BASE = {
    Kind.SYSLOG_UDP: "syslog+udp://127.0.0.1:514",
    Kind.SYSLOG_TCP: "syslog+tcp://127.0.0.1:601",
    Kind.SYSLOG_TLS: "syslog+tls://127.0.0.1:6514",
    Kind.HEC: "hec+https://127.0.0.1:8088",
}


def refusal(text: str) -> str:
    """Parse a DEST that must be refused and return the message."""
    with pytest.raises(DestinationError) as caught:
        parse_destination(text)
    return str(caught.value)


def test_every_option_of_every_kind_sets_its_field() -> None:
    udp = parse_destination(BASE[Kind.SYSLOG_UDP] + "?format=json&facility=4&max_size=1200")
    assert (udp.payload, udp.facility, udp.max_size) == ("json", 4, 1200)
    tcp = parse_destination(BASE[Kind.SYSLOG_TCP] + "?timeout=2.5&retries=3&backoff_cap=0")
    assert (tcp.timeout, tcp.retries, tcp.backoff_cap, tcp.payload) == (2.5, 3, 0.0, "cef")
    tls = parse_destination(BASE[Kind.SYSLOG_TLS] + "?ca=/etc/ca.pem&facility=23")
    assert (tls.ca_file, tls.facility) == ("/etc/ca.pem", 23)
    hec = parse_destination(
        BASE[Kind.HEC] + "?ca=c.pem&token_file=t&ack=true&index=sec&path=/x&batch_bytes=1024&retries=1"
    )
    assert (hec.ca_file, hec.token_file, hec.ack, hec.index, hec.hec_path, hec.batch_bytes, hec.retries) == (
        "c.pem",
        "t",
        True,
        "sec",
        "/x",
        1024,
        1,
    )
    assert parse_destination(BASE[Kind.HEC] + "?ack=0").ack is False


def test_the_table_names_real_fields_and_their_defaults() -> None:
    assert OPTIONS[Kind.FILE] == {}
    for kind in BASE:
        untouched = parse_destination(BASE[kind])
        for name, spec in OPTIONS[kind].items():
            assert spec.field in Destination.model_fields, name
            assert getattr(untouched, spec.field) == spec.default, name
    assert OPTIONS[Kind.SYSLOG_UDP]["facility"].default == 13
    assert OPTIONS[Kind.HEC]["path"].default == "/services/collector/event"


def test_unknown_option_lists_what_the_kind_takes() -> None:
    assert refusal(BASE[Kind.HEC] + "?bogus=1") == (
        "unknown option 'bogus' for hec+https://; known: ack, backoff_cap, batch_bytes, ca, index, path, "
        "retries, timeout, token_file"
    )


def test_option_of_another_kind_says_where_it_applies() -> None:
    message = refusal(BASE[Kind.SYSLOG_UDP] + "?ca=x")
    assert message == (
        "option ca does not apply to syslog+udp:// (only to syslog+tls://, hec+https://); "
        "known: facility, format, max_size"
    )
    assert "only to syslog+udp://" in refusal(BASE[Kind.SYSLOG_TCP] + "?max_size=600")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("facility=24", "option facility must be an integer from 0 to 23 (default 13)"),
        ("facility=-1", "option facility must be an integer from 0 to 23 (default 13)"),
        ("facility=\N{SUPERSCRIPT TWO}", "option facility must be an integer from 0 to 23 (default 13)"),
        ("timeout=soon", "option timeout must be a number (default 10.0)"),
        ("timeout=nan", "option timeout must be between 0.1 and 600 (default 10.0)"),
        ("format=xml", "option format is cef or json (default cef)"),
        ("retries=0", "option retries must be an integer from 1 to 100 (default 5)"),
    ],
)
def test_wrong_value_names_the_option_its_range_and_default(query: str, message: str) -> None:
    assert refusal(f"{BASE[Kind.SYSLOG_TLS]}?{query}") == message


def test_wrong_value_on_hec_options() -> None:
    assert refusal(BASE[Kind.HEC] + "?ack=yes") == "option ack is 1 or 0 (default 0)"
    assert refusal(BASE[Kind.HEC] + "?path=x") == "option path must start with / (default /services/collector/event)"
    assert "from 1024 to 1000000" in refusal(BASE[Kind.HEC] + "?batch_bytes=2000000")


@pytest.mark.parametrize("name", sorted(SECRET_OPTIONS))
def test_secrets_are_refused_for_every_kind_without_echoing_them(name: str) -> None:
    for base in BASE.values():
        message = refusal(f"{base}?{name}=s3cr3t-value")
        assert message.startswith(f"option {name} is not accepted: secrets never go on the command line")
        assert "s3cr3t" not in message


def test_an_option_given_twice_is_refused_before_its_values_are_read() -> None:
    assert refusal(BASE[Kind.SYSLOG_UDP] + "?facility=99&facility=1") == "option facility given twice"


def test_a_query_field_without_a_value_is_a_destination_error() -> None:
    assert refusal(BASE[Kind.SYSLOG_UDP] + "?facility") == "options are NAME=VALUE pairs joined by &"
    assert refusal(BASE[Kind.SYSLOG_UDP] + "?&") == "options are NAME=VALUE pairs joined by &"


def test_a_required_option_that_is_missing_is_named() -> None:
    table = {Kind.SYSLOG_TLS: {**OPTIONS[Kind.SYSLOG_TLS], "ca": OptionSpec("ca_file", required=True)}}
    with pytest.raises(DestinationError, match=r"^syslog\+tls:// needs option ca$"):
        read_options(Kind.SYSLOG_TLS, "facility=1", table)
    assert read_options(Kind.SYSLOG_TLS, "ca=/x.pem", table) == {"ca_file": "/x.pem"}


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("file:///var/lib/natt-audit/findings.ocsf.jsonl", "/var/lib/natt-audit/findings.ocsf.jsonl"),
        ("file://localhost/tmp/a%20b.csv", "/tmp/a b.csv"),
    ],
)
def test_a_file_url_with_an_absolute_path_is_a_file_destination(text: str, path: str) -> None:
    destination = parse_destination(text)
    assert (destination.kind, destination.path, destination.text) == (Kind.FILE, path, text)
    assert not destination.is_network


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("file://server/share/x.jsonl", "no host"),
        ("file:///x.jsonl?format=cef", "option format does not apply to file://"),
    ],
)
def test_a_file_url_elsewhere_or_with_options_is_refused(text: str, words: str) -> None:
    with pytest.raises(DestinationError) as info:
        parse_destination(text)
    assert words in str(info.value)
