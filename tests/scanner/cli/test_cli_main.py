"""main(argv) in this process: one dispatch, one error path, global options anywhere, config by key."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest

from scanner.cli import main as main_module
from scanner.cli.main import COMMANDS, build_parser, main
from scanner.cli.options import config_flags, config_option
from scanner.core.errors import NattError
from scanner.core.exitcodes import ExitCode
from scanner.inputs.config import KEY_NAMES, load_config

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "natt-audit.toml"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("NATT_AUDIT_CONFIG", "NATT_AUDIT_LOG_FORMAT", "NATT_AUDIT_INVENTORY", "NATT_AUDIT_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err.splitlines()


# --- one error path -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["scan", "--concurrency", "0"], "scan: argument --concurrency: must be at least 1"),
        (["scan", "--format", "pdf"], "scan: argument -f/--format: invalid choice: 'pdf'"),
        (["nope"], "argument command: invalid choice: 'nope'"),
        (["scan", "--token", "S3cret"], "unrecognized arguments: --token ... (values not shown)"),
        (["scan", "--password", "S3cret"], "argument 2 (--password) would put a password on the command line"),
        (["policy"], "policy: the following arguments are required: policy_command"),
    ],
)
def test_usage_errors_are_one_prefixed_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(argv, capsys)
    assert code == ExitCode.USAGE and out == ""
    assert len(err) == 1, err
    assert err[0].startswith("natt-audit: error: ") and message in err[0]
    assert err[0].count("natt-audit") == 1  # never `error: natt-audit:` or a doubled prefix
    assert "S3cret" not in err[0]


def test_json_log_format_before_or_after_the_command_makes_errors_json(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["--log-format", "json", "scan", "--concurrency", "0"],
        ["scan", "--concurrency", "0", "--log-format", "json"],
        ["scan", "-i", "/nonexistent/hosts.yaml", "--log-format", "json"],
    ):
        code, _, err = run(argv, capsys)
        assert code == ExitCode.USAGE and len(err) == 1
        doc = json.loads(err[0])
        assert doc["level"] == "error" and doc["fields"]["exit_code"] == 2
        assert not doc["msg"].startswith("natt-audit")


def test_the_environment_chooses_json_too(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NATT_AUDIT_LOG_FORMAT", "json")
    code, _, err = run(["policy", "validate", "/nonexistent/p.yaml"], capsys)
    assert code == ExitCode.USAGE
    assert json.loads(err[0])["msg"].startswith("invalid: /nonexistent/p.yaml")


def test_a_multi_line_error_prefixes_every_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inventory = tmp_path / "hosts.txt"
    inventory.write_text("127.0.0.1:0\n127.0.0.1:99999\x1b[31m\n", encoding="utf-8")
    code, out, err = run(["scan", "-i", str(inventory), "--no-history"], capsys)
    assert code == ExitCode.USAGE and out == ""
    assert len(err) == 2 and all(line.startswith("natt-audit: error: ") for line in err)
    assert f"{inventory}:1" in err[0] and f"{inventory}:2" in err[1]
    assert "\x1b" not in "".join(err)


def test_every_natt_error_is_caught_once_with_its_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Held(NattError):
        exit_code = ExitCode.LOCKED

    def held(args: argparse.Namespace) -> int:
        raise Held("held elsewhere\nsecond line")

    monkeypatch.setattr("scanner.cli.schema.run", held)
    code, _, err = run(["schema", "report"], capsys)
    assert code == ExitCode.LOCKED
    assert err == ["natt-audit: error: held elsewhere", "natt-audit: error: second line"]


def test_ctrl_c_is_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("scanner.cli.schema.run", interrupted)
    assert run(["schema", "report"], capsys)[::2] == (130, ["natt-audit: error: interrupted"])


def test_help_and_version_exit_0_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--help"], capsys)
    assert code == 0 and out.startswith("usage: natt-audit") and err == []
    code, out, err = run(["scan", "--help"], capsys)
    assert code == 0 and "--inventory INVENTORY" in out and "--log-format {plain,json}" in out and err == []
    code, out, _ = run(["-v", "--version"], capsys)
    assert code == 0 and out.startswith("natt-audit ")


# --- one dispatch, global options in one place ------------------------------------------------


def test_every_command_is_a_module_with_register_and_run() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {
        "scan",
        "inventory",
        "worker",
        "workers",
        "demo",
        "lab",
        "policy",
        "export",
        "ship",
        "remediate",
        "schema",
        "history",
        "diff",
        "trend",
        "config",
    }
    for module in COMMANDS:
        assert callable(module.register) and callable(module.run)
    assert parser.parse_args(["schema", "report"]).func is main_module.schema.run
    assert parser.parse_args(["diff"]).func is main_module.diff.run
    assert parser.parse_args(["inventory", "show", "-i", "x.yaml"]).func is main_module.inventory.run


@pytest.mark.parametrize(
    "argv",
    [
        ["-v", "--log-format", "json", "policy", "validate", "baseline"],
        ["policy", "-v", "--log-format", "json", "validate", "baseline"],
        ["policy", "validate", "baseline", "-v", "--log-format", "json"],
        ["--log-format", "plain", "policy", "validate", "-v", "baseline", "--log-format", "json"],
    ],
)
def test_global_options_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.verbose is True
    assert config_flags(args)["log_format"] == "json"


def test_global_options_default_when_absent() -> None:
    args = build_parser().parse_args(["history"])
    assert args.verbose is False and config_flags(args)["log_format"] is None


def test_verbose_turns_debug_on_and_off_again(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-v", "schema", "policy"]) == 0
    assert logging.getLogger("natt_audit").isEnabledFor(logging.DEBUG)
    assert main(["schema", "policy"]) == 0
    assert not logging.getLogger("natt_audit").isEnabledFor(logging.DEBUG)
    capsys.readouterr()


# --- config layering by key, not by argparse destination --------------------------------------

# Every scan option that sets a configuration key, with a value and what the key must become.
SCAN_FLAGS: list[tuple[list[str], str, object]] = [
    (["-i", "hosts.yaml"], "inventory", "hosts.yaml"),
    (["--inventory-id", "corp"], "inventory_id", "corp"),
    (["-p", "baseline", "-p", "strict"], "policies", ["baseline", "strict"]),
    (["--waivers", "w.yaml"], "waivers", ["w.yaml"]),
    (["--waiver-warn-days", "3"], "waiver_warn_days", 3),
    (["--export", "out.jsonl"], "exports", ["out.jsonl"]),
    (["--db", "h.db"], "database", "h.db"),
    (["--no-history"], "history", False),
    (["--concurrency", "7"], "concurrency", 7),
    (["--max-auth-failures", "5"], "max_auth_failures", 5),
    (["--fail-on", "high"], "fail_on", "high"),
    (["--min-coverage", "0.5"], "min_coverage", 0.5),
    (["--baseline-min-coverage", "0.25"], "baseline_min_coverage", 0.25),
    (["--log-format", "json"], "log_format", "json"),
    (["-f", "csv"], "format", "csv"),
    (["-o", "r.json"], "output", "r.json"),
    (["--ca-bundle", "ca.pem"], "ca_bundle", "ca.pem"),
    (["--insecure-skip-tls-verify"], "insecure_skip_tls_verify", True),
    (["--tls-min-version", "1.0"], "tls_min_version", "1.0"),
    (["--legacy-port-fallback"], "legacy_port_fallback", True),
    (["--color", "never"], "color", "never"),
    (["--password-file", "pw"], "credentials.password_file", "pw"),
    (["--keytab", "scan.keytab"], "credentials.keytab", "scan.keytab"),
    (["--no-ntlm-fallback"], "ntlm_fallback", False),
    (["--host-timeout", "9"], "timeouts.host", 9.0),
    (["--connect-timeout", "3"], "timeouts.connect", 3.0),
    (["--deadline", "45m"], "timeouts.deadline", 2700.0),
    (["--grace", "0"], "timeouts.grace", 0.0),
    (["--site-timeout", "5"], "timeouts.site", 5.0),
    (["--default-site", "hq"], "default_site", "hq"),
    (["--broker", "redis://broker:6379/0"], "broker", "redis://broker:6379/0"),
    (["--broker-password-file", "bpw"], "broker_password_file", "bpw"),
    (["--broker-ca-bundle", "ca.pem"], "broker_ca_bundle", "ca.pem"),
]


@pytest.mark.parametrize(("argv", "key", "expected"), SCAN_FLAGS, ids=[k for _, k, _ in SCAN_FLAGS])
def test_each_scan_flag_sets_its_config_key(argv: list[str], key: str, expected: object) -> None:
    loaded = load_config(path=None, environ={}, flags=config_flags(build_parser().parse_args(["scan", *argv])))
    assert loaded.sources[key] == "flag"
    value = loaded.config.model_dump(mode="json")
    for part in key.split("."):
        value = value[part]
    assert value == expected
    assert [k for k, source in loaded.sources.items() if source == "flag"] == [key]


def test_every_config_key_but_the_credential_variables_has_a_scan_flag() -> None:
    given = config_flags(build_parser().parse_args(["scan"]))
    assert set(given) == KEY_NAMES - {"credentials.username", "credentials.username_env", "credentials.password_env"}
    assert {key for _, key, _ in SCAN_FLAGS} == set(given)


def test_flags_beat_env_beat_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('concurrency = 8\nlog_format = "json"\n[timeouts]\nhost = 12\n', encoding="utf-8")
    flags = config_flags(build_parser().parse_args(["scan", "--host-timeout", "3"]))
    loaded = load_config(path=str(path), environ={"NATT_AUDIT_CONCURRENCY": "16"}, flags=flags)
    assert (loaded.config.timeouts.host, loaded.config.concurrency, loaded.config.log_format) == (3.0, 16, "json")
    assert (loaded.sources["timeouts.host"], loaded.sources["concurrency"]) == ("flag", "env NATT_AUDIT_CONCURRENCY")


def test_a_dest_cannot_be_renamed_away_from_its_key() -> None:
    parser = argparse.ArgumentParser()
    with pytest.raises(TypeError, match="destination is its key"):
        config_option(parser, "--host-timeout", key="timeouts.host", dest="host_timeout")
    with pytest.raises(ValueError, match="not a configuration key"):
        config_option(parser, "--host-timeout", key="timeouts.hots")
    with pytest.raises(KeyError, match="not a configuration key"):
        load_config(path=None, environ={}, flags={"host_timeout": 3})


def test_config_show_reports_the_username_the_file_sets(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["config", "show", "--config", str(EXAMPLE)], capsys)
    assert code == 0 and err == []
    assert f"# username: set by credentials.username (file {EXAMPLE})" in out
    assert 'username = "CORP\\\\svc-natt-audit"' in out
    code, out, _ = run(["config", "show", "--db", "/tmp/x.db"], capsys)
    assert 'database = "/tmp/x.db"  # flag' in out
    assert "# username: not set (credentials.username, $NATT_AUDIT_USERNAME)" in out


def test_config_show_says_the_environment_holds_the_username(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NATT_AUDIT_USERNAME", "LAB\\auditor")
    code, out, _ = run(["config", "show"], capsys)
    assert code == 0 and "# username: set in $NATT_AUDIT_USERNAME" in out


def test_a_bad_config_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text('password = "hunter2"\n', encoding="utf-8")
    code, _, err = run(["scan", "--config", str(path)], capsys)
    assert code == ExitCode.USAGE and len(err) == 1
    assert err[0].startswith(f"natt-audit: error: {path}:1: password: a password must never be stored")
    assert "hunter2" not in err[0]


# `remediate --apply` takes the scan's connection and history options, by the same keys.
REMEDIATE_FLAGS: list[tuple[list[str], str, object]] = [
    (["--password-file", "pw"], "credentials.password_file", "pw"),
    (["--concurrency", "7"], "concurrency", 7),
    (["--host-timeout", "9"], "timeouts.host", 9.0),
    (["--connect-timeout", "3"], "timeouts.connect", 3.0),
    (["--ca-bundle", "ca.pem"], "ca_bundle", "ca.pem"),
    (["--insecure-skip-tls-verify"], "insecure_skip_tls_verify", True),
    (["--tls-min-version", "1.0"], "tls_min_version", "1.0"),
    (["--db", "h.db"], "database", "h.db"),
    (["--no-history"], "history", False),
]


@pytest.mark.parametrize(("argv", "key", "expected"), REMEDIATE_FLAGS, ids=[k for _, k, _ in REMEDIATE_FLAGS])
def test_each_remediate_flag_sets_its_config_key(argv: list[str], key: str, expected: object) -> None:
    args = build_parser().parse_args(["remediate", "r.json", "--apply", *argv])
    loaded = load_config(path=None, environ={}, flags=config_flags(args))
    value = loaded.config.model_dump(mode="json")
    for part in key.split("."):
        value = value[part]
    assert value == expected
    assert [k for k, source in loaded.sources.items() if source == "flag"] == [key]
