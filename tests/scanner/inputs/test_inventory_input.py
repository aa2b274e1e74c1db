"""docs/reliability.md#inventory-input: bad entries are refused at load with file:line; nothing is rewritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.inputs.inventory import InventoryError, load_inventory
from tests.peers.hostile_lab import CREDS
from tests.support.cliproc import natt_audit

# entry -> what the message must say. Each is refused in every format, with the entry's line.
BAD_ENTRIES = {
    "port-zero": ("srv01", "0", "must be an integer 1..65535"),
    "port-too-big": ("srv01", "99999", "must be an integer 1..65535"),
    "port-text": ("srv01", "abc", "must be an integer 1..65535"),
    "comma": ("srv01,srv02", None, "comma"),
    "two-words": ("srv01 extra", None, "whitespace"),
    "url": ("ftp://srv01", None, "URL scheme"),
}


def _text(name: str, port: str | None) -> str:
    return f"# estate\nok-host\n{name}{':' + port if port else ''}\n"


def _csv(name: str, port: str | None) -> str:
    cell = f'"{name}"' if "," in name else name
    return f"name,port\nok-host,\n{cell},{port or ''}\n"


def _yaml(name: str, port: str | None) -> str:
    port_part = f", port: {port}" if port else ""
    return f'hosts:\n  - {{name: ok-host}}\n  - {{name: "{name}"{port_part}}}\n'


@pytest.mark.parametrize("fmt", ["txt", "csv", "yaml"])
@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_bad_entry_refused_with_file_and_line(tmp_path: Path, fmt: str, case: str) -> None:
    name, port, expected = BAD_ENTRIES[case]
    if fmt == "yaml" and port == "abc":
        expected = "valid integer"  # strict YAML types: a string where a port belongs
    path = tmp_path / f"hosts.{fmt}"
    path.write_text({"txt": _text, "csv": _csv, "yaml": _yaml}[fmt](name, port), encoding="utf-8")
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    message = str(info.value)
    assert f"{path}:3" in message, message  # the offending line, not the good one
    assert expected in message, message
    assert len(info.value.problems) == 1  # ok-host is fine: exactly one problem


@pytest.mark.parametrize(
    ("entry", "address", "port"),
    [("::1", "::1", 5985), ("[::1]:40001", "::1", 40001), ("[0:0::1]:40002", "0:0::1", 40002)],
)
def test_ipv6_literal_is_kept_as_written(tmp_path: Path, entry: str, address: str, port: int) -> None:
    path = tmp_path / "hosts.txt"
    path.write_text(entry + "\n", encoding="utf-8")
    (target,) = load_inventory(path).targets
    assert (target.address, target.port) == (address, port)  # nothing rewritten or resolved
    assert target.endpoint == f"http://[{address}]:{port}/wsman"


@pytest.mark.parametrize(
    "text",
    ["srv01\nsrv01\n", "srv01\nSRV01\n", "127.0.0.1\n127.0.0.1:5985\n", "::1\n[0:0::1]:5985\n"],
)
def test_same_host_twice_refused_naming_both_lines(tmp_path: Path, text: str) -> None:
    path = tmp_path / "hosts.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    message = str(info.value)
    assert f"{path}:2" in message and f"{path}:1" in message and "duplicate" in message


def test_cli_refuses_bad_inventory_before_any_connection(tmp_path: Path) -> None:
    path = tmp_path / "hosts.txt"
    # 127.0.0.1:9 would be contacted if the scan started; the bad line must stop it first.
    path.write_text("127.0.0.1:9\nsrv01:99999\n", encoding="utf-8")
    out = tmp_path / "r.json"
    proc = natt_audit("scan", "-i", str(path), "-f", "json", "-o", str(out), env=CREDS)
    assert proc.returncode == 2
    assert f"{path}:2".encode() in proc.stderr
    assert not out.exists()
    assert b"scanned" not in proc.stderr
