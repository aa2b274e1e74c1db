"""Config layering (defaults < file < env < flags), strict validation with file:line, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reports.export.destinations import parse_destination
from scanner.cli.main import build_parser
from scanner.cli.options import config_flags
from scanner.inputs.config import (
    ConfigError,
    format_duration,
    load_config,
    parse_duration,
    read_config_file,
    redact,
    show_config,
)
from tests.support.cliproc import run_cli

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "natt-audit.toml"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "natt-audit.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def scan_flags(*argv: str) -> dict[str, object]:
    return config_flags(build_parser().parse_args(["scan", *argv]))


def test_layering_defaults_file_env_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'inventory = "file.yaml"\nconcurrency = 8\nfail_on = "high"\n\n[timeouts]\nhost = 12\ndeadline = "45m"\n',
    )
    env = {"NATT_AUDIT_CONCURRENCY": "16", "NATT_AUDIT_MIN_COVERAGE": "0.9"}
    loaded = load_config(path=path, environ=env, flags=scan_flags("--concurrency", "32"))
    c = loaded.config
    assert c.inventory == "file.yaml"  # file
    assert c.concurrency == 32  # flag beats env beats file
    assert c.min_coverage == 0.9  # env
    assert c.fail_on.value == "high"
    assert c.timeouts.host == 12 and c.timeouts.deadline == 45 * 60
    assert c.timeouts.connect == 5.0  # default
    assert loaded.sources["concurrency"] == "flag"
    assert loaded.sources["min_coverage"] == "env NATT_AUDIT_MIN_COVERAGE"
    assert loaded.sources["timeouts.host"] == f"file {path}"
    assert loaded.sources["timeouts.grace"] == "default"
    # The config file can come from the environment too.
    assert load_config(path=None, environ={"NATT_AUDIT_CONFIG": path}).config.inventory == "file.yaml"


def test_unknown_keys_are_refused_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'inventory = "x"\n\n[timeouts]\nhost = 3\nhots = 4\n')
    with pytest.raises(ConfigError) as err:
        load_config(path=path, environ={})
    assert f"{path}:5: timeouts.hots: unknown key" in str(err.value)


def test_bad_values_and_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'inventory = "x"\nconcurrency = 0\n')
    with pytest.raises(ConfigError, match=r"natt-audit.toml:2: concurrency: Input should be greater"):
        load_config(path=path, environ={})
    path = write(tmp_path, 'inventory = "x"\nfail_on = = 1\nconcurrency = 2\n')
    with pytest.raises(ConfigError, match=r"natt-audit.toml:2:\d+: Invalid value"):
        load_config(path=path, environ={})
    path = write(tmp_path, 'inventory = "x"\nfail_on = [\n')
    with pytest.raises(ConfigError, match=r"natt-audit.toml:2: "):
        load_config(path=path, environ={})
    with pytest.raises(ConfigError, match="NATT_AUDIT_HISTORY"):
        load_config(path=None, environ={"NATT_AUDIT_HISTORY": "maybe"})
    with pytest.raises(ConfigError, match="env NATT_AUDIT_CONCURRENCY: concurrency"):
        load_config(path=None, environ={"NATT_AUDIT_CONCURRENCY": "many"})


@pytest.mark.parametrize(
    "text",
    [
        'password = "hunter2"\n',
        '[credentials]\nusername = "CORP\\\\svc"\npassword = "hunter2"\n',
    ],
)
def test_a_password_in_the_file_is_refused_without_echoing_it(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path=path, environ={})
    message = str(err.value)
    assert "hunter2" not in message
    assert "must never be stored in the config file" in message
    assert "password_file" in message
    assert f"{path}:{text.count(chr(10))}:" in message  # the line of the password key


def test_config_show_redacts_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'inventory = "inv.yaml"\nexports = ["hec://user:S3cretTok@127.0.0.1:8088/?token=abc123&index=x"]\n'
        '[credentials]\npassword_file = "/run/secrets/pw"\n',
    )
    env = {"NATT_AUDIT_PASSWORD": "EnvSecret!", "NATT_AUDIT_USERNAME": "LAB\\auditor"}
    text = show_config(load_config(path=path, environ=env), env)
    for secret in ("S3cretTok", "abc123", "EnvSecret!"):
        assert secret not in text
    assert "hec://***@127.0.0.1:8088/?token=***&index=x" in text
    assert 'inventory = "inv.yaml"  # file' in text
    assert "password: from the password file" in text


def test_the_example_config_is_valid() -> None:
    loaded = load_config(path=str(EXAMPLE), environ={})
    assert loaded.config.database is not None
    assert loaded.config.timeouts.deadline is not None
    # Every export destination it names is one `scan --export` accepts (file:// URLs included).
    assert [parse_destination(text).path for text in loaded.config.exports] == [
        "/var/lib/natt-audit/findings.ocsf.jsonl"
    ]


def test_config_show_reports_every_key_the_example_sets() -> None:
    done = run_cli("config", "show", "--config", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name in read_config_file(EXAMPLE):
        key = name.rsplit(".", 1)[-1]
        assert any(line.startswith(f"{key} = ") and line.endswith(f"# file {EXAMPLE}") for line in lines), name


@given(st.integers(min_value=1, max_value=10 * 24 * 3600))
def test_durations_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_duration_spellings() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("45m") == 2700
    assert parse_duration("2h") == 7200
    assert parse_duration("1h30m") == 5400
    assert parse_duration("12.5") == 12.5
    for bad in ("", "soon", "-5", "0", "5d", True):
        with pytest.raises(ValueError):  # noqa: PT011 - the message is checked elsewhere
            parse_duration(bad)


def test_redact_leaves_plain_destinations_alone() -> None:
    assert redact("file:///var/lib/out.jsonl") == "file:///var/lib/out.jsonl"
    assert redact("syslog+tls://127.0.0.1:6514") == "syslog+tls://127.0.0.1:6514"
