"""Exit-code precedence, atomic writes and one-line escaping."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.core.atomic import atomic_text, write_atomic
from scanner.core.exitcodes import ExitCode, combine
from scanner.core.sanitize import one_line


def test_precedence_usage_over_incomplete_over_findings() -> None:
    assert combine(ExitCode.FINDINGS, ExitCode.INCOMPLETE) is ExitCode.INCOMPLETE
    assert combine(ExitCode.INCOMPLETE, ExitCode.USAGE, ExitCode.FINDINGS) is ExitCode.USAGE
    assert combine(ExitCode.OK, ExitCode.FINDINGS) is ExitCode.FINDINGS
    assert combine() is ExitCode.OK


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["report.json"]


def test_atomic_write_failure_keeps_previous(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")

    with pytest.raises(TypeError):
        write_atomic(target, 12345)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.json"]


@given(st.text())
def test_one_line_never_contains_controls(text: str) -> None:
    out = one_line(text, limit=10_000)
    assert "\n" not in out and "\r" not in out and "\x1b" not in out
    assert not any(
        0x80 <= ord(c) <= 0x9F or 0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069 for c in out
    )


def test_one_line_shows_escapes() -> None:
    assert one_line("a\nb\x1b[31m") == "a\\nb\\x1b[31m"


def test_atomic_write_streams_chunks_and_a_failing_chunk_keeps_previous(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    write_atomic(target, (part.encode() for part in ["a", "b", "c"]))
    assert target.read_bytes() == b"abc"

    def broken() -> Iterator[bytes]:
        yield b"half"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomic(target, broken())
    assert target.read_bytes() == b"abc"
    assert os.listdir(tmp_path) == ["report.json"]


def test_atomic_text_streams_utf8_without_newline_translation(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    with atomic_text(target) as out:
        out.write("a\r\n")
        assert target.read_text() == "old"  # nothing is visible before the block ends
        out.write("专业版\n")
    assert target.read_bytes() == "a\r\n专业版\n".encode()
    assert os.listdir(tmp_path) == ["report.json"]


def _write_then_fail(target: Path, bad: str | None) -> None:
    with atomic_text(target) as out:
        out.write("x" * 100_000)  # more than the text buffer: some of it reaches the temp file
        if bad is None:
            raise OSError(28, "No space left on device")
        out.write(bad)  # a lone surrogate cannot be written as UTF-8
        out.flush()


@pytest.mark.parametrize("bad", ["half\ud800", None])
def test_atomic_text_failure_keeps_previous(tmp_path: Path, bad: str | None) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(UnicodeEncodeError if bad else OSError):
        _write_then_fail(target, bad)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.json"]


def test_inert_lines_keeps_line_breaks_and_escapes_each_line() -> None:
    from scanner.core.logsetup import inert_lines

    out = inert_lines("inv.txt:1: bad\x1b[31m\ninv.txt:2: \u202eevil")
    assert out.split("\n") == ["inv.txt:1: bad\\x1b[31m", "inv.txt:2: \\u202eevil"]
