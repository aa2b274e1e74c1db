"""Everything a scan will write or read is checked before the first host is contacted.

Reproduced on main: `-o` into a missing folder failed only after the whole scan, every logon
spent. The "estate" here is a raw loopback server that counts connections: each refusal must
come with exit 2 and no connection at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.cli.main import main
from scanner.core.exitcodes import ExitCode
from tests.peers.rawserver import RawConn, RawServer


def _never(conn: RawConn) -> None:
    conn.read_request()


@pytest.fixture
def host(lab_env: Path) -> Iterator[tuple[RawServer, Path]]:
    with RawServer(_never) as server:
        inventory = lab_env / "hosts.txt"
        inventory.write_text(f"127.0.0.1:{server.port}\n", encoding="utf-8")
        yield server, inventory


def refused(server: RawServer, argv: list[str], capsys: pytest.CaptureFixture[str], *words: str) -> None:
    code = main(["scan", "--host-timeout", "2", "--connect-timeout", "1", *argv])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE, err
    for word in words:
        assert word in err, err
    assert server.accepted == 0, "a host was contacted before the inputs were checked"


def test_output_into_a_missing_folder(
    host: tuple[RawServer, Path], lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, inventory = host
    out = lab_env / "missing" / "report.json"
    refused(server, ["-i", str(inventory), "-o", str(out)], capsys, "-o/--output", "does not exist")


def test_output_into_a_folder_others_can_write(
    host: tuple[RawServer, Path], lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, inventory = host
    shared = lab_env / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    argv = ["-i", str(inventory), "-o", str(shared / "r.json")]
    refused(server, argv, capsys, "writable by other users", "not sticky")


def test_output_onto_a_folder(
    host: tuple[RawServer, Path], lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, inventory = host
    refused(server, ["-i", str(inventory), "-o", str(lab_env)], capsys, "is a folder")


def test_history_database_in_a_shared_folder(
    host: tuple[RawServer, Path], lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, inventory = host
    shared = lab_env / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    refused(server, ["-i", str(inventory), "--db", str(shared / "h.db")], capsys, "writable by other users")
    assert list(shared.iterdir()) == []


def test_export_file_into_a_missing_folder(
    host: tuple[RawServer, Path], lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, inventory = host
    dest = str(lab_env / "missing" / "findings.ocsf.jsonl")
    refused(server, ["-i", str(inventory), "--no-history", "--export", dest], capsys, "--export", "does not exist")


def test_export_spool_in_a_shared_folder(
    host: tuple[RawServer, Path], lab_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, inventory = host
    shared = lab_env / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("NATT_AUDIT_SPOOL", str(shared))
    dest = str(lab_env / "findings.jsonl")
    argv = ["-i", str(inventory), "--no-history", "--export", dest]
    refused(server, argv, capsys, "spool", "writable by other users")


@pytest.mark.parametrize(
    ("content", "words"), [(None, "character device"), (b"not a certificate\n", "no PEM certificate")]
)
def test_a_ca_bundle_that_cannot_be_used(
    host: tuple[RawServer, Path], lab_env: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, words: str
) -> None:
    server, inventory = host
    bundle = "/dev/zero"
    if content is not None:
        (lab_env / "ca.pem").write_bytes(content)
        bundle = str(lab_env / "ca.pem")
    refused(server, ["-i", str(inventory), "--no-history", "--ca-bundle", bundle], capsys, "--ca-bundle", words)


def test_a_missing_password_file(
    host: tuple[RawServer, Path], lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, inventory = host
    missing = str(lab_env / "no-such-password")
    refused(server, ["-i", str(inventory), "--no-history", "--password-file", missing], capsys, "No such file")


def test_a_syslog_tls_ca_that_cannot_be_used(
    host: tuple[RawServer, Path], lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, inventory = host
    dest = f"syslog+tls://127.0.0.1:1?ca={lab_env / 'missing.pem'}"
    refused(server, ["-i", str(inventory), "--no-history", "--export", dest], capsys, "ca=", "No such file")
