"""Estate files: validation with file:line, presets, recipes, the generator and the inventory."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scanner.core.yamlfile import FileError
from scanner.lab.estate import OS_PRESETS, POLICYAGENT_KEY, Recipe, expand_recipe, load_estate
from scanner.lab.generate import generate_estate
from scanner.lab.server import HostEndpoint, write_inventory
from tests.support.cliproc import run_cli

REPO = Path(__file__).resolve().parents[3]
HEAD = "accounts:\n  - {username: 'LAB\\auditor', password: 'Lab-Passw0rd!'}\n"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "estate.yaml"
    p.write_text(HEAD + text, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("hosts:\n  - {name: a, colour: red}\n", 4, "colour"),
        ("hosts:\n  - name: a\n    os: win95\n", 5, "win95"),
        (
            "hosts:\n  - name: a\n    registry:\n      K:\n        V: {type: REG_DWORD, data: -1}\n",
            7,
            "REG_DWORD",
        ),
        (
            "hosts:\n  - name: a\n    registry:\n      K:\n        V: {type: REG_BINARY, data: xyz}\n",
            7,
            "hex",
        ),
        ("hosts:\n  - name: a\n    fault: explode\n", 5, "unknown fault"),
        ("hosts:\n  - name: a\n    fault: 'slow:abc'\n", 5, "slow"),
        ("hosts:\n  - name: a\n    fault: 'soap-fault:5@200'\n", 5, "4xx/5xx status"),
        ("hosts:\n  - name: a\n    fault: handshake-fault\n", 5, "handshake-fault:<code>"),
        ("hosts:\n  - name: a\n    winrm: '4.0'\n", 5, "winrm"),
        ("hosts:\n  - {name: a}\n  - {name: A}\n", 5, "duplicate host name"),
        ("defaults: {latency: 5}\n", 3, "latency"),
        ("generate:\n  - {count: 2, prefix: w-, mode_mix: {purple: 1}}\n", 4, "purple"),
    ],
)
def test_validation_errors_name_file_and_line(tmp_path: Path, text: str, line: int, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FileError) as info:
        load_estate(path)
    assert info.value.path == str(path)
    assert info.value.line == line, str(info.value)
    assert needle in str(info.value)


def test_winrm_persona_fault_status_and_ntlm_version(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hosts:\n"
        "  - {name: xp, os: xp-sp3, fault: 'plain-fault:2150858817@400'}\n"
        "  - {name: w7, os: win7, winrm: '2.0', ntlm_version: false}\n"
        "  - {name: w10, fault: 'soap-fault:5'}\n",
    )
    xp, w7, w10 = load_estate(path).resolved()
    assert (xp.winrm, xp.legacy, xp.ntlm_version) == ("1.1", True, True)
    assert xp.fault is not None and (xp.fault.kind, xp.fault.arg, xp.fault.status) == ("plain-fault", 2150858817, 400)
    assert (w7.winrm, w7.legacy, w7.ntlm_version) == ("2.0", False, False)
    assert w10.winrm == "3.0"
    assert w10.fault is not None and (w10.fault.arg, w10.fault.status) == (5, 500)


def test_password_never_in_repr(tmp_path: Path) -> None:
    estate = load_estate(write(tmp_path, "hosts:\n  - {name: a}\n"))
    assert "Lab-Passw0rd!" not in repr(estate)
    assert "Lab-Passw0rd!" not in str(estate.model_dump())


def test_presets_are_realistic() -> None:
    expected = {
        "win2000": ("5.0.2195", 4, "Service Pack 4"),
        "xp-sp1": ("5.1.2600", 1, "Service Pack 1"),
        "xp-sp2": ("5.1.2600", 2, "Service Pack 2"),
        "xp-sp3": ("5.1.2600", 3, "Service Pack 3"),
        "2003-sp1": ("5.2.3790", 1, "Service Pack 1"),
        "2003-sp2": ("5.2.3790", 2, "Service Pack 2"),
        "vista": ("6.0.6002", 2, "Service Pack 2"),
        "2008": ("6.0.6002", 2, "Service Pack 2"),
        "2008r2": ("6.1.7601", 1, "Service Pack 1"),
        "win7": ("6.1.7601", 1, "Service Pack 1"),
        "2012r2": ("6.3.9600", 0, None),
        "win10": ("10.0.19045", 0, None),
        "win11": ("10.0.22631", 0, None),
        "2016": ("10.0.14393", 0, None),
        "2019": ("10.0.17763", 0, None),
        "2022": ("10.0.20348", 0, None),
        "2025": ("10.0.26100", 0, None),
    }
    assert set(OS_PRESETS) == set(expected)
    for name, (version, sp, csd) in expected.items():
        o = OS_PRESETS[name]
        assert (o.version, o.service_pack, o.csd_version) == (version, sp, csd), name
        assert o.build == int(version.rsplit(".", 1)[1])
        assert o.caption.startswith("Microsoft")


def test_preset_keys_and_null_key(tmp_path: Path) -> None:
    estate = load_estate(
        write(
            tmp_path,
            (
                "hosts:\n  - {name: a, os: win10}\n  - {name: b, os: xp-sp2}\n"
                "  - {name: c, registry: {'SYSTEM\\CurrentControlSet\\Services\\PolicyAgent': null}}\n"
            ),
        )
    )
    a, b, c = estate.resolved()
    assert a.key(POLICYAGENT_KEY) is not None
    assert a.key("SYSTEM\\CurrentControlSet\\Services\\IPsec") is None
    assert b.key("system\\currentcontrolset\\services\\ipsec") is not None
    assert c.key(POLICYAGENT_KEY) is None


def test_recipe_is_deterministic_and_follows_mix() -> None:
    recipe = Recipe(
        count=2000,
        prefix="w-",
        seed=7,
        mode_mix={"absent": 0.6, "0": 0.2, "1": 0.1, "2": 0.1},
        fault_mix={"refuse": 0.05},
    )
    one = expand_recipe(recipe)
    two = expand_recipe(recipe)
    assert [(n, f.registry, f.fault) for n, f in one] == [(n, f.registry, f.fault) for n, f in two]
    other = expand_recipe(recipe.model_copy(update={"seed": 8}))
    assert [f.registry for _, f in one] != [f.registry for _, f in other]
    absent = sum(1 for _, f in one if not f.registry)
    assert 1050 < absent < 1350
    refused = sum(1 for _, f in one if f.fault == "refuse")
    assert 50 < refused < 150
    assert one[0][0] == "w-0001"
    assert one[-1][0] == "w-2000"


def test_defaults_apply_to_hosts_and_recipes(tmp_path: Path) -> None:
    estate = load_estate(
        write(
            tmp_path,
            (
                "defaults: {os: '2019', latency_ms: 20, tags: {site: x}}\n"
                "hosts:\n  - {name: a, latency_ms: 5}\n"
                "generate:\n  - {count: 3, prefix: g-, seed: 1}\n"
            ),
        )
    )
    hosts = estate.resolved()
    assert [h.latency_ms for h in hosts] == [5, 20, 20, 20]
    assert all(h.os.version == "10.0.17763" and h.tags == {"site": "x"} for h in hosts)


def test_generator_output_is_a_valid_deterministic_estate(tmp_path: Path) -> None:
    text = generate_estate(300, seed=3)
    assert text == generate_estate(300, seed=3) != generate_estate(300, seed=4)
    p = tmp_path / "gen.yaml"
    p.write_text(text, encoding="utf-8")
    hosts = load_estate(p).resolved()
    assert len(hosts) == 300
    assert len({h.os.version for h in hosts}) >= 5


def test_generate_command_prints_estate() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "scanner.lab", "generate", "--count", "5", "--seed", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    data = yaml.safe_load(out.stdout)
    assert len(data["hosts"]) == 5
    assert data["accounts"][0]["username"] == "LAB\\auditor"


def test_demo_estate_covers_every_preset_and_mode() -> None:
    estate = load_estate(REPO / "scanner/lab/estates/demo.yaml")
    hosts = estate.resolved()
    assert 150 <= len(hosts) <= 250
    assert {h.os.version for h in hosts} >= {o.version for o in OS_PRESETS.values()}
    datas = {
        (v[1], v[2] if not isinstance(v[2], list) else tuple(v[2]))
        for h in hosts
        for k in h.keys.values()
        for v in k.values.values()
    }
    assert {
        ("REG_DWORD", 0),
        ("REG_DWORD", 1),
        ("REG_DWORD", 2),
        ("REG_DWORD", 3),
        ("REG_DWORD", 4294967295),
        ("REG_SZ", "2"),
        ("REG_QWORD", 2),
        ("REG_BINARY", "02000000"),
        ("REG_MULTI_SZ", ("2",)),
    } <= datas
    faults = {h.fault.kind for h in hosts if h.fault}
    assert {"refuse", "auth-reject", "slow", "quota", "http-502-html", "malformed-xml"} <= faults
    assert any(
        n != "AssumeUDPEncapsulationContextOnSendRule"
        and n.lower() == "assumeudpencapsulationcontextonsendrule"
        for h in hosts
        for k in h.keys.values()
        for n, _, _ in k.values.values()
    )


def test_inventory_is_valid_yaml_with_escaped_names(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yaml"
    write_inventory(
        inv,
        [
            HostEndpoint("a", "127.0.0.1", 40001, "http", {"role": 'x: "y"', "site": "#1"}, None),
            HostEndpoint("b", "127.0.0.1", 40002, "https", {}, None),
        ],
        None,
    )
    data = yaml.safe_load(inv.read_text())
    assert data["defaults"] == {"transport": "ntlm", "scheme": "http"}
    assert data["hosts"][0] == {
        "name": "a",
        "address": "127.0.0.1",
        "port": 40001,
        "tags": {"role": 'x: "y"', "site": "#1"},
    }
    assert data["hosts"][1]["scheme"] == "https"
    assert data["hosts"][1]["transport"] == "basic"
    assert not list(tmp_path.glob(".inventory-*"))  # temp file renamed away


def test_the_generated_header_reproduces_the_file() -> None:
    first = run_cli("lab", "generate", "--count", "7", "--seed", "3", "--prefix", "ws-", "--latency-ms", "20")
    assert first.returncode == 0, first.stderr
    header = first.stdout.splitlines()[0]
    assert header == "# generated by natt-audit lab generate --count 7 --seed 3 --prefix ws- --latency-ms 20"
    again = run_cli(*shlex.split(header.removeprefix("# generated by natt-audit ")))
    assert again.stdout == first.stdout


def test_every_generate_option_has_help_and_its_default() -> None:
    done = run_cli("lab", "generate", "--help")
    assert done.returncode == 0
    for option, default in (("--count", "200"), ("--seed", "1"), ("--prefix", "host-"), ("--latency-ms", "0")):
        line = next(line for line in done.stdout.splitlines() if line.strip().startswith(option))
        assert f"(default {default})" in " ".join(done.stdout.split()), option
        assert len(line.split()) > 2, option  # a help text follows the option
