"""Inventory parsing: every format, every refusal with its file:line, and no network at all."""

from __future__ import annotations

import shutil
import socket
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.core.models import AuthMethod, Scheme
from scanner.inputs.inventory import Format, InventoryError, load_inventory, parse_inventory

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any resolution or connection attempt fail the test: parsing must stay offline."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"inventory parsing touched the network: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "gethostbyname", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def copy(name: str, tmp_path: Path) -> Path:
    """Copy a fixture so paths in messages are short and predictable."""
    target = tmp_path / name
    shutil.copy(DATA / name, target)
    return target


def problems_of(path: Path | str, **kwargs: Any) -> list[str]:
    with pytest.raises(InventoryError) as info:
        load_inventory(path, **kwargs)
    return str(info.value).splitlines()


def text_problems(text: str, fmt: Format = "text", **kwargs: Any) -> list[str]:
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inv", fmt=fmt, **kwargs)
    return list(info.value.problems)


# --- text ------------------------------------------------------------------------------------


def test_text_inventory_hosts_ports_ipv6_and_cidr(tmp_path: Path) -> None:
    path = copy("inventory_good.txt", tmp_path)
    inv = load_inventory(path)
    got = [(t.name, t.address, t.port, t.source.rsplit(":", 1)[1]) for t in inv.targets]
    assert got == [
        ("srv01", "srv01", 5985, "3"),
        ("srv02.corp.example", "srv02.corp.example", 5986, "4"),
        ("SRV03.Corp.Example", "SRV03.Corp.Example", 5985, "5"),  # case kept: nothing rewritten
        ("::1", "::1", 5985, "6"),
        ("::2", "::2", 5985, "7"),
        ("192.0.2.10", "192.0.2.10", 5985, "8"),
        *[(f"192.0.2.{i}", f"192.0.2.{i}", 5985, "9") for i in range(1, 7)],
        *[(f"2001:db8::{i}", f"2001:db8::{i}", 5986, "10") for i in range(1, 4)],
    ]
    assert inv.targets[0].source == f"{path}:3"
    assert inv.targets[3].endpoint == "http://[::1]:5985/wsman"
    assert inv.warnings == (
        f"{path}:9: 192.0.2.0/29 expanded to 6 addresses",
        f"{path}:10: 2001:db8::/126 expanded to 3 addresses",
    )
    assert {t.scheme for t in inv.targets} == {Scheme.HTTP}
    assert {t.transport for t in inv.targets} == {AuthMethod.NTLM}


def test_issue8_bad_entries_are_all_refused_with_their_lines(tmp_path: Path) -> None:
    path = copy("inventory_issue8.txt", tmp_path)
    assert problems_of(path) == [
        f"{path}:2: port '0' must be an integer 1..65535",
        f"{path}:3: port '99999' must be an integer 1..65535",
        f"{path}:4: port 'abc' must be an integer 1..65535",
        f"{path}:5: entry 'srv01,srv02' contains a comma (one host per line)",
        f"{path}:6: entry 'srv01 extra' contains whitespace (one host per line)",
        f"{path}:7: entry 'ftp://srv01' has a URL scheme; give host or host:port only",
        f"{path}:9: duplicate host 'SRV00' (same name as {path}:1)",
    ]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("http://x", "has a URL scheme"),
        ("srv01:5985/wsman", "must be an integer"),
        ("srv01/wsman", "contains a path separator"),
        ("user@srv01", "contains '@'"),
        ("srv\x1b[31m01", "control or invisible characters"),
        ("srv01\u202e", "control or invisible characters"),
        ("srv01:", "port '' must be"),
        ("srv01:05985", "port '05985' must be"),
        ("srv01:+5985", "port '+5985' must be"),
        ("srv_01", "invalid label 'srv_01'"),
        ("-srv01", "invalid label"),
        ("a..b", "invalid label ''"),
        ("a" * 64, "invalid label"),
        (".".join(["a" * 63] * 4), "longer than 253"),
        ("256.1.1.1", "not a valid IPv4 address"),
        ("010.0.0.1", "not a valid IPv4 address"),
        ("sérveur", "not ASCII"),
        ("fe80::1%eth0", "zone identifiers"),
        ("2001:db8::1:5985:zz", "not a valid IPv6 address"),
        ("[srv01]:5985", "brackets are only for IPv6"),
        ("[::1", "is not [IPv6-address]"),
        ("10.0.0.0/15", "has 131072 addresses; the limit is 65536"),
        ("2001:db8::/111", "has 131072 addresses"),
        ("192.0.2.1/29", "has host bits set"),
        ("192.0.2.0/", "numeric prefix length"),
    ],
)
def test_malformed_text_lines_are_refused(line: str, fragment: str) -> None:
    problems = text_problems(f"good-host\n{line}\n")
    assert len(problems) == 1
    assert problems[0].startswith("inv:2: ")
    assert fragment in problems[0]


def test_every_problem_is_collected_and_shown() -> None:
    text = "".join(f"bad,host{i}\n" for i in range(50))
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inv", fmt="text")
    assert len(info.value.problems) == 50
    shown = str(info.value).splitlines()
    assert len(shown) == 50
    assert shown[0].startswith("inv:1: ")
    assert shown[-1].startswith("inv:50: ")
    assert "more" not in str(info.value)


def test_cidr_expansion_edges() -> None:
    def names(spec: str) -> list[str]:
        return [t.name for t in parse_inventory(spec, "inv", fmt="text").targets]

    assert names("192.0.2.0/30") == ["192.0.2.1", "192.0.2.2"]  # network and broadcast excluded
    assert names("192.0.2.0/31") == ["192.0.2.0", "192.0.2.1"]  # RFC 3021 point-to-point: both
    assert names("192.0.2.7/32") == ["192.0.2.7"]
    assert names("2001:db8::/127") == ["2001:db8::", "2001:db8::1"]
    assert names("[2001:db8::8/125]") == [f"2001:db8::{i}" for i in "9abcdef"]
    ports = {t.port for t in parse_inventory("192.0.2.0/30:5986", "inv", fmt="text").targets}
    assert ports == {5986}


def test_largest_allowed_cidr_is_a_slash_16() -> None:
    inv = parse_inventory("198.18.0.0/16\n", "inv", fmt="text")
    assert len(inv.targets) == 65534
    assert inv.targets[-1].name == "198.18.255.254"


@pytest.mark.parametrize(
    ("text", "second_line_message"),
    [
        ("srv01\nSrv01:5985\n", "duplicate host 'Srv01' (same name as inv:1)"),
        ("srv01.\nsrv01:5985\n", "duplicate host 'srv01' (same name as inv:1)"),
        ("::1\n[0:0::1]\n", "duplicate host: '0:0::1' port 5985 is also inv:1"),
        ("192.0.2.0/30\n192.0.2.2\n", "duplicate host '192.0.2.2' (same name as inv:1)"),
    ],
)
def test_duplicates_name_both_lines(text: str, second_line_message: str) -> None:
    assert text_problems(text) == [f"inv:2: {second_line_message}"]


def test_same_address_on_other_ports_is_not_a_duplicate() -> None:
    text = (
        "defaults: {}\nhosts:\n"
        "  - {name: a, address: 127.0.0.1, port: 1}\n"
        "  - {name: b, address: 127.0.0.1, port: 2}\n"
    )
    inv = parse_inventory(text, "inv.yaml", fmt="yaml")
    assert [t.port for t in inv.targets] == [1, 2]


def test_defaults_from_the_caller_and_basic_over_http() -> None:
    inv = parse_inventory(
        "srv01\n", "inv", fmt="text", default_scheme=Scheme.HTTPS, default_transport=AuthMethod.BASIC
    )
    assert (inv.targets[0].port, inv.targets[0].scheme, inv.targets[0].transport) == (
        5986,
        Scheme.HTTPS,
        AuthMethod.BASIC,
    )
    assert parse_inventory("srv01\n", "inv", fmt="text", default_port=15985).targets[0].port == 15985
    problems = text_problems("srv01\n", default_transport=AuthMethod.BASIC)
    assert problems == ["inv:1: transport basic requires scheme https (Basic over HTTP is refused)"]


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("text", "# only a comment\n\n   \n"),
        ("text", ""),
        ("csv", "name,port\n"),
        ("yaml", "hosts: []\n"),
        ("yaml", ""),
    ],
)
def test_an_empty_inventory_is_an_error(fmt: Format, text: str) -> None:
    assert text_problems(text, fmt) == ["inv: the inventory lists no hosts"]


def test_max_hosts_is_enforced_before_expanding() -> None:
    problems = text_problems("srv01\n198.18.0.0/16\n", max_hosts=10)
    assert problems == ["inv:2: more than 10 hosts (at least 65535 with the ranges up to this line); the limit is 10"]


def test_ranges_are_counted_across_the_file_before_any_address_is_generated() -> None:
    # 16 lines of /16: 1,048,544 addresses. Before counting first, they took 49 s and 2 GB
    # to be refused; now no address is generated at all.
    text = "".join(f"10.{i}.0.0/16\n" for i in range(16))
    started = time.monotonic()
    tracemalloc.start()
    try:
        problems = text_problems(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert problems == [
        "inv:16: more than 1000000 hosts (at least 1048544 with the ranges up to this line); the limit is 1000000"
    ]
    assert time.monotonic() - started < 1.0
    assert peak < 5 * 1024 * 1024
    # One host fewer than the limit across ranges and names is accepted (and then expanded).
    assert len(parse_inventory("srv01\n192.0.2.0/30\n", "inv", fmt="text", max_hosts=3).targets) == 3
    assert text_problems("srv01\nsrv02\n192.0.2.0/30\n", max_hosts=3) == [
        "inv:3: more than 3 hosts (at least 4 with the ranges up to this line); the limit is 3"
    ]


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    assert problems_of(missing) == [f"{missing}: cannot read the inventory: No such file or directory"]
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"srv01\nsrv\xff02\n")
    assert problems_of(binary) == [f"{binary}:2: not UTF-8 (byte 9)"]


def test_format_follows_the_extension(tmp_path: Path) -> None:
    for name in ("hosts.YML", "hosts.yaml"):
        (tmp_path / name).write_text("hosts: [{name: srv01}]\n")
        assert load_inventory(tmp_path / name).targets[0].name == "srv01"
    (tmp_path / "hosts.lst").write_text("hosts: [{name: srv01}]\n")
    assert "contains whitespace" in problems_of(tmp_path / "hosts.lst")[0]  # a .lst file is text


# --- YAML ------------------------------------------------------------------------------------


def test_yaml_inventory_as_the_lab_writes_it(tmp_path: Path) -> None:
    path = copy("inventory_lab.yaml", tmp_path)
    inv = load_inventory(path)
    assert [t.model_dump(mode="json") for t in inv.targets] == [
        {
            "name": "ws-0001",
            "address": "127.0.0.1",
            "port": 40001,
            "scheme": "http",
            "transport": "ntlm",
            "tags": {"role": "workstation"},
            "group": None,
            "source": f"{path}:3",
            "winrm": "current",
            "os_version": None,
            "spn": None,
            "site": "default",
        },
        {
            "name": "ws-0002",
            "address": "127.0.0.1",
            "port": 40002,
            "scheme": "http",
            "transport": "ntlm",
            "tags": {"role": "vpn-gateway", "site": "tokyo"},
            "group": None,
            "source": f"{path}:4",
            "winrm": "current",
            "os_version": None,
            "spn": None,
            "site": "default",
        },
        {
            "name": "gw-0003",
            "address": "127.0.0.3",
            "port": 5986,
            "scheme": "https",
            "transport": "basic",
            "tags": {},
            "group": "gateways",
            "source": f"{path}:5",
            "winrm": "current",
            "os_version": None,
            "spn": None,
            "site": "default",
        },
    ]


def test_yaml_errors_name_file_line_and_column(tmp_path: Path) -> None:
    path = copy("inventory_bad.yaml", tmp_path)
    assert problems_of(path) == [
        f"{path}:4:47: hosts.1.port: Input should be a valid integer",
        f"{path}:5:47: port 0 must be an integer 1..65535",
        f"{path}:6:12: name 'ftp://ws-0004' has a URL scheme; give the host only",
        f"{path}:7:62: hosts.4.colour: unknown field 'colour'"
        " (known: address, group, name, os_version, port, scheme, site, spn, tags, transport, winrm)",
        f"{path}:8:12: duplicate host 'WS-0001' (same name as {path}:3:12)",
        f"{path}:9:30: duplicate host: '127.0.0.1' port 40001 is also {path}:3:30",
        f"{path}:10:65: transport basic requires scheme https (Basic over HTTP is refused)",
    ]


def test_yaml_defaults_apply_and_host_values_win() -> None:
    text = (
        "defaults: {scheme: https, port: 15986, tags: {site: tokyo, role: server}}\n"
        "hosts:\n"
        "  - {name: a}\n"
        "  - {name: b, port: 1234, scheme: http, tags: {role: gateway}}\n"
    )
    a, b = parse_inventory(text, "inv.yaml", fmt="yaml").targets
    assert (a.port, a.scheme, a.tags) == (15986, Scheme.HTTPS, {"site": "tokyo", "role": "server"})
    assert (b.port, b.scheme, b.tags) == (1234, Scheme.HTTP, {"site": "tokyo", "role": "gateway"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hosts:\n  - {name: a}\n  - {name: a, name: b}\n", "inv:3:15: duplicate key 'name'"),
        ("hosts:\n  - !!python/object:os.system {name: a}\n", "inv:2:5: tag"),
        ("hosts:\n  - &h {name: a}\n  - *h\n", "inv:2:5: anchors and aliases are not allowed"),
        ("host:\n  - {name: a}\n", "inv:1:1: hosts: Field required"),
        ("hosts:\n  - {name: 1234}\n", "inv:2:12: hosts.0.name: Input should be a valid string"),
        (
            "hosts:\n  - {name: a, scheme: HTTPS}\n",
            "inv:2:23: hosts.0.scheme: Input should be 'http' or 'https'",
        ),
        ("hosts:\n  - {name: a, tags: {n: 1}}\n", "inv:2:25: hosts.0.tags.n: Input should be a valid string"),
        (
            "defaults: {port: 70000}\nhosts:\n  - {name: a}\n",
            "inv:1:18: port 70000 must be an integer 1..65535",
        ),
        ("- {name: a}\n", "inv:1:1: the file must be a mapping with 'hosts'"),
        ("hosts:\n  - {name: a}\n\x1f\n", "inv:3: character U+001F is not allowed"),
    ],
)
def test_yaml_structural_refusals(text: str, expected: str) -> None:
    problems = text_problems(text, "yaml")
    assert problems[0].startswith(expected), problems


# --- CSV -------------------------------------------------------------------------------------


def test_csv_inventory_with_quoting_tags_and_blank_rows(tmp_path: Path) -> None:
    path = copy("inventory_good.csv", tmp_path)
    inv = load_inventory(path)
    got = [
        (t.name, t.address, t.port, t.scheme.value, t.transport.value, t.group, t.tags, t.source)
        for t in inv.targets
    ]
    assert got == [
        (
            "ws-0001",
            "127.0.0.1",
            40001,
            "http",
            "ntlm",
            None,
            {"role": "workstation", "site": "tokyo"},
            f"{path}:2",
        ),
        ("ws-0002", "127.0.0.1", 40002, "https", "ntlm", "vpn", {"role": "gateway, primary"}, f"{path}:3"),
        ("ws-0003", "ws-0003", 5986, "https", "basic", None, {}, f"{path}:4"),
    ]


def test_csv_errors_use_physical_lines(tmp_path: Path) -> None:
    path = copy("inventory_bad.csv", tmp_path)
    assert problems_of(path) == [
        f"{path}:2: name 'srv01,srv02' contains a comma (one host per entry)",
        f"{path}:3: tag 'note' contains control or invisible characters",  # a record spanning lines 3-4
        f"{path}:5: port 'abc' must be an integer 1..65535",
        f"{path}:6: row has 3 fields, the header has 4",
        f"{path}:8: duplicate host 'SRV06' (same name as {path}:7)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "host,port\nsrv01,1\n",
            [
                "inv:1: unknown column 'host' "
                "(known: name, address, port, scheme, transport, group, winrm, os_version, site, spn, tag:<name>)",
                "inv:1: the header has no 'name' column",
            ],
        ),
        ("name,name\na,b\n", ["inv:1: column 'name' appears twice"]),
        (
            "name, port\nsrv01,1\n",
            [
                "inv:1: unknown column ' port' (did you mean 'port'?) "
                "(known: name, address, port, scheme, transport, group, winrm, os_version, site, spn, tag:<name>)"
            ],
        ),
        ("name\n srv01\n", ["inv:2: name ' srv01' contains whitespace (one host per entry)"]),
        ('name\n"srv01\n', ["inv:2: malformed CSV: unexpected end of data"]),
        ("name,scheme\nsrv01,ftp\n", ["inv:2: scheme 'ftp' must be one of: http, https"]),
        (
            "name,transport\nsrv01,digest\n",
            ["inv:2: transport 'digest' must be one of: ntlm, kerberos, credssp, basic, negotiate"],
        ),
        (
            "name,transport\nsrv01,basic\n",
            ["inv:2: transport basic requires scheme https (Basic over HTTP is refused)"],
        ),
        (
            "name,address\nsrv01,http://srv01\n",
            ["inv:2: address 'http://srv01' has a URL scheme; give the host only"],
        ),
    ],
)
def test_csv_refusals(text: str, expected: list[str]) -> None:
    assert text_problems(text, "csv") == expected


# --- properties ------------------------------------------------------------------------------

_label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?", fullmatch=True)
_hostname = (
    st.lists(_label, min_size=1, max_size=4).map(".".join).filter(lambda h: not h.split(".")[-1].isdigit())
)
_ip = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))
_port = st.none() | st.integers(min_value=1, max_value=65535)


@given(
    host=_hostname | _ip,
    port=_port,
    indent=st.sampled_from(["", "  ", "\t"]),
    comment=st.sampled_from(["", " # x", "#y"]),
)
def test_valid_text_lines_round_trip(host: str, port: int | None, indent: str, comment: str) -> None:
    bracketed = f"[{host}]" if ":" in host else host
    line = host if port is None and ":" in host else (bracketed if port is None else f"{bracketed}:{port}")
    inv = parse_inventory(f"{indent}{line}{comment}\n", "inv", fmt="text")
    [target] = inv.targets
    assert (target.name, target.address, target.port, target.source) == (host, host, port or 5985, "inv:1")


@given(host=_hostname | _ip, port=_port)
def test_valid_csv_and_yaml_rows_round_trip(host: str, port: int | None) -> None:
    csv_text = f"name,port\n{host},{'' if port is None else port}\n"
    yaml_text = f"hosts:\n  - name: '{host}'\n" + ("" if port is None else f"    port: {port}\n")
    cases: list[tuple[Format, str]] = [("csv", csv_text), ("yaml", yaml_text)]
    for fmt, text in cases:
        [target] = parse_inventory(text, "inv", fmt=fmt).targets
        assert (target.name, target.address, target.port, target.source) == (
            host,
            host,
            port or 5985,
            "inv:2",
        )


_no_hash = st.text(alphabet=st.characters(blacklist_characters="#\n"), max_size=20)


@given(before=_no_hash, after=_no_hash, poison=st.sampled_from([",", "://", "ftp://", "http://x", "a,b"]))
def test_lines_with_a_comma_or_scheme_are_refused(before: str, after: str, poison: str) -> None:
    line = before + poison + after
    with pytest.raises(InventoryError) as info:
        parse_inventory(f"{line}\n", "inv", fmt="text")
    assert info.value.problems
    assert all(p.startswith("inv:1: ") for p in info.value.problems)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(text=st.text(max_size=300), fmt=st.sampled_from(["text", "csv", "yaml"]))
def test_arbitrary_input_only_ever_raises_inventory_error(text: str, fmt: Format) -> None:
    error: InventoryError | None = None
    try:
        inv = parse_inventory(text, "inv", fmt=fmt)
    except InventoryError as exc:
        error = exc
    if error is None:
        assert inv.targets
    else:
        assert error.problems
        assert "\x1b" not in str(error)  # control characters from the file are escaped in messages


def test_winrm_legacy_selects_the_winrm_1_1_ports_and_os_version_is_kept() -> None:
    text = """
defaults: {winrm: legacy}
hosts:
  - {name: xp-01}
  - {name: w2k3-01, scheme: https, os_version: "5.2.3790"}
  - {name: xp-02, port: 8080}
  - {name: w10-01, winrm: current, os_version: "10.0.19045"}
"""
    targets = parse_inventory(text, "inv.yaml", fmt="yaml").targets
    assert [(t.name, t.port, t.winrm.value, t.os_version) for t in targets] == [
        ("xp-01", 80, "legacy", None),
        ("w2k3-01", 443, "legacy", "5.2.3790"),
        ("xp-02", 8080, "legacy", None),  # an explicit port always wins
        ("w10-01", 5985, "current", "10.0.19045"),
    ]
    csv_text = "name,scheme,winrm,os_version\nxp,http,legacy,5.1.2600\nsrv,https,,6.1\n"
    rows = parse_inventory(csv_text, "inv.csv", fmt="csv").targets
    assert [(t.port, t.winrm.value, t.os_version) for t in rows] == [
        (80, "legacy", "5.1.2600"),
        (5986, "current", "6.1"),
    ]


def test_bad_winrm_and_os_version_are_refused_with_their_place() -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory("name,winrm,os_version\na,ancient,\nb,,ten\n", "inv", fmt="csv")
    assert info.value.problems == (
        "inv:2: winrm 'ancient' must be one of: current, legacy",
        "inv:3: os_version 'ten' must be a Windows version such as 10.0.19045 or 6.1",
    )
    with pytest.raises(InventoryError) as info:
        parse_inventory("hosts:\n  - {name: a, os_version: '6.1; rm'}\n", "inv.yaml", fmt="yaml")
    assert "inv.yaml:2" in str(info.value) and "os_version '6.1; rm'" in str(info.value)
def test_the_same_address_on_different_ports_is_two_hosts_in_text() -> None:
    text = "127.0.0.1:14519\n127.0.0.1:14520\nsrv01\n[::1]:5985\n[::1]:5986\n"
    inventory = parse_inventory(text, "inv", fmt="text")
    assert [(t.name, t.address, t.port) for t in inventory.targets] == [
        ("127.0.0.1:14519", "127.0.0.1", 14519),
        ("127.0.0.1:14520", "127.0.0.1", 14520),
        ("srv01", "srv01", 5985),
        ("[::1]:5985", "::1", 5985),
        ("[::1]:5986", "::1", 5986),
    ]
    # The same address and port twice is still one host written twice.
    with pytest.raises(InventoryError) as info:
        parse_inventory("127.0.0.1:14519\n127.0.0.1:14520\n127.0.0.1:14519\n", "inv", fmt="text")
    assert info.value.problems == ("inv:3: duplicate host '127.0.0.1:14519' (same name as inv:1)",)


def test_the_same_address_on_different_ports_is_two_hosts_in_yaml() -> None:
    text = (
        "hosts:\n"
        "  - {name: lab-a, address: 127.0.0.1, port: 14519}\n"
        "  - {name: lab-b, address: 127.0.0.1, port: 14520}\n"
    )
    inventory = parse_inventory(text, "inv.yaml", fmt="yaml")
    assert [(t.name, t.port) for t in inventory.targets] == [("lab-a", 14519), ("lab-b", 14520)]
    with pytest.raises(InventoryError) as info:
        parse_inventory(text.replace("14520", "14519"), "inv.yaml", fmt="yaml")
    assert info.value.problems == (
        "inv.yaml:3:28: duplicate host: '127.0.0.1' port 14519 is also inv.yaml:2:28",
    )


def test_an_ip_address_with_kerberos_is_refused_unless_it_names_its_spn() -> None:
    text = (
        "defaults: {transport: kerberos}\n"
        "hosts:\n"
        "  - {name: 10.0.0.5}\n"
        "  - {name: web01.corp.example.com, address: 10.0.0.6}\n"
        "  - {name: 10.0.0.7, spn: HTTP/web02.corp.example.com}\n"
        "  - {name: 10.0.0.8, transport: negotiate}\n"
        "  - {name: 10.0.0.9, spn: 'HTTP/web03@CORP'}\n"
    )
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inv.yaml", fmt="yaml")
    assert len(info.value.problems) == 2
    assert info.value.problems[0].startswith("inv.yaml:3:")
    assert "'10.0.0.5' is an IP address: transport kerberos needs the host's name" in info.value.problems[0]
    assert info.value.problems[1].startswith("inv.yaml:7:")
    assert "spn 'HTTP/web03@CORP' must be SERVICE/host" in info.value.problems[1]
    good = parse_inventory(text.replace("  - {name: 10.0.0.5}\n", "").replace("@CORP", ".corp"), "inv.yaml", fmt="yaml")
    assert [(t.name, t.address, t.spn, t.transport.value) for t in good.targets] == [
        ("web01.corp.example.com", "10.0.0.6", None, "kerberos"),  # the SPN comes from the name
        ("10.0.0.7", "10.0.0.7", "HTTP/web02.corp.example.com", "kerberos"),
        ("10.0.0.8", "10.0.0.8", None, "negotiate"),  # negotiate reaches an address over NTLM
        ("10.0.0.9", "10.0.0.9", "HTTP/web03.corp", "kerberos"),
    ]
    with pytest.raises(InventoryError) as info:
        parse_inventory("name,transport\n192.0.2.1,kerberos\n", "inv.csv", fmt="csv")
    assert info.value.problems[0].startswith("inv.csv:2: '192.0.2.1' is an IP address")
