"""The other commands through main(argv), in this process: schema, export, ship, policy, lab, demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reports.findings import flatten
from scanner.cli import demo
from scanner.cli.main import main
from scanner.core.exitcodes import ExitCode
from scanner.core.formats import Format
from tests.scanner.conftest import ESTATE
from tests.support.sample_report import make_sample_report, rendered


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err.splitlines()


@pytest.mark.parametrize("what", ["report", "policy", "waivers"])
def test_schema_prints_json_schema(what: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["schema", what], capsys)
    assert code == 0 and err == []
    assert "$schema" in json.loads(out) or "properties" in json.loads(out)


def test_export_to_stdout_to_a_file_and_its_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = make_sample_report()
    findings = len(list(flatten(report.header, report.hosts)))
    source = tmp_path / "report.json"
    source.write_text(rendered(report, Format.JSON), encoding="utf-8")
    code, out, err = run(["export", str(source), "-f", "cef"], capsys)
    assert code == 0 and out.count("CEF:0|") == findings and err == []
    target = tmp_path / "findings.jsonl"
    code, out, err = run(
        ["export", str(source), "-f", "jsonl", "--to", str(target), "--spool", str(tmp_path / "s")], capsys
    )
    assert code == 0 and out == ""
    assert err[0].startswith(f"natt-audit: spool {tmp_path / 's'}: {findings} findings")
    assert err[1].startswith(f"natt-audit: {target}: ok: {findings} delivered")
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    for argv, words in (
        (["export", str(tmp_path / "bad.json"), "-f", "csv"], "bad.json: not a natt-audit JSON report"),
        (["export", str(tmp_path / "none.json"), "-f", "csv"], "none.json: cannot read it: No such file"),
        (["export", str(source), "-f", "cef", "--to", "hec+https://127.0.0.1:1?token=x"], "token"),
    ):
        code, out, err = run(argv, capsys)
        assert code == ExitCode.USAGE and out == "" and len(err) == 1
        assert err[0].startswith("natt-audit: error: ") and words in err[0], err


def test_ship_an_empty_spool_and_a_file_destination(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["ship", "--spool", str(tmp_path)], capsys)
    assert code == 0 and err == [f"natt-audit: spool {tmp_path}: 0 findings in 0 scans"]
    code, _, err = run(["ship", "--spool", str(tmp_path), "--to", str(tmp_path / "x.jsonl")], capsys)
    assert code == ExitCode.USAGE
    assert err == [
        f"natt-audit: error: ship resends to network destinations; {tmp_path / 'x.jsonl'} is a file: "
        "write files with `natt-audit export REPORT.json --to FILE`"
    ]
    code, _, err = run(["ship", "--spool", str(tmp_path), "--to", "syslog+tcp://nohost"], capsys)
    assert code == ExitCode.USAGE and err[0].startswith("natt-audit: error: ")


def test_policy_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["policy", "validate", "baseline"], capsys)
    assert code == 0 and out.startswith("valid: builtin:baseline") and err == []
    code, out, err = run(["policy", "test", "baseline"], capsys)
    assert code == 0 and "examples as expected" in out
    source = tmp_path / "report.json"
    source.write_text(rendered(make_sample_report(), Format.JSON), encoding="utf-8")
    code, out, _ = run(["policy", "explain", "--report", str(source), "--host", "srv-mode2", "-p", "baseline"], capsys)
    assert code == 0 and "NATT-001 (high, policy baseline): fail" in out
    code, out, err = run(["policy", "explain", "--report", str(tmp_path / "none.json"), "--host", "x"], capsys)
    missing = f"natt-audit: error: {tmp_path / 'none.json'}: cannot read it: No such file or directory"
    assert code == ExitCode.USAGE and err == [missing]


def test_lab_generate_is_wired_in(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["lab", "generate", "--count", "2"], capsys)
    assert code == 0 and out.count("- name:") + out.count("- {name:") == 2


def test_demo_scans_a_lab_and_writes_its_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo, "demo_estate", lambda: ESTATE)  # the small estate, same lab account
    code, out, err = run(["demo", "--out", str(tmp_path / "demo"), "--color", "never"], capsys)
    assert code == ExitCode.INCOMPLETE  # e-refused cannot be read
    assert "e-fail" in out
    assert err[0] == "natt-audit: demo: starting the simulated estate (scanlab.yaml) on 127.0.0.1 ..."
    assert err[1] == "natt-audit: demo: scanning 4 hosts over WinRM (NTLM, encrypted)"
    assert err[2].startswith("natt-audit: scanned 4 hosts: 2 pass, 1 fail")
    assert err[3] == f"natt-audit: demo: JSON report written to {tmp_path / 'demo' / 'report.json'}"
    assert json.loads((tmp_path / "demo" / "report.json").read_text(encoding="utf-8"))["summary"]["hosts_total"] == 4


def test_demo_reports_a_lab_that_does_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "estate.yaml"
    broken.write_text("hosts: [\n", encoding="utf-8")
    monkeypatch.setattr(demo, "demo_estate", lambda: broken)
    code, out, err = run(["demo", "--out", str(tmp_path / "demo")], capsys)
    assert code == ExitCode.USAGE and out == ""
    assert err[-1].startswith("natt-audit: error: demo: the lab exited with status 2")


def test_a_lab_that_does_not_start_is_reported_with_one_prefix_per_line(tmp_path: Path) -> None:
    from scanner.cli.demo import LabProcess

    estate = tmp_path / "estate.yaml"
    text = "accounts: []\nhosts:\n  - {name: a, colr: red}\n  - {name: b, fautl: refuse}\n"
    estate.write_text(text, encoding="utf-8")
    lab = LabProcess(estate, tmp_path / "inventory.yaml")
    try:
        with pytest.raises(RuntimeError) as info:
            lab.wait_ready(timeout=60)
    finally:
        lab.stop()
    message = str(info.value)
    assert "natt-audit" not in message  # natt-audit's logger adds the one prefix
    assert message.startswith("the lab exited with status 2: ")
    assert "(did you mean 'fault'?)" in message.splitlines()[-1]
