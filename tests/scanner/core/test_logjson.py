"""`--log-format json`: one JSON object per line; host text cannot split or forge a line."""

from __future__ import annotations

import io
import json
import logging
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.core import logsetup

HOSTILE = [
    'evil\n{"ts":"x","level":"error","msg":"forged","fields":{}}',
    "\x1b[31mred\x1b[0m\r\u2028\u2029\u202etxt",
    "[bold]markup[/bold] \x00 \x7f \x85",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_stays_one_json_line(capsys: pytest.CaptureFixture[str], text: str) -> None:
    logsetup.setup_logging(fmt="json")
    log = logging.getLogger("natt_audit")
    log.warning("host %s said %s", "h1", text, extra={"fields": {"caption": text}})
    out = capsys.readouterr().err
    assert out.endswith("\n") and out.count("\n") == 1
    assert out.isascii()  # no raw U+2028, bidi or ESC
    doc = json.loads(out)
    assert set(doc) == {"ts", "level", "msg", "fields"}
    assert doc["level"] == "warning"
    assert doc["msg"] == f"host h1 said {text}"
    assert doc["fields"] == {"caption": text}
    logsetup.setup_logging()


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_any_text_round_trips_on_one_line(text: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logsetup.JsonFormatter())
    record = logging.LogRecord("natt_audit", logging.INFO, __file__, 1, "%s", (text,), None)
    record.fields = {"v": text}
    handler.emit(record)
    line = stream.getvalue()
    assert line.count("\n") == 1 and line.isascii()
    assert json.loads(line)["msg"] == text


def test_the_summary_follows_the_format(capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("natt_audit")
    logsetup.setup_logging(fmt="json")
    log.info("scanned 3 hosts", extra=logsetup.fields(hosts=3))
    doc = json.loads(capsys.readouterr().err)
    assert doc["msg"] == "scanned 3 hosts" and doc["fields"] == {"hosts": 3}
    logsetup.setup_logging(fmt="plain")
    log.info("scanned 3 hosts")
    assert capsys.readouterr().err == "natt-audit: scanned 3 hosts\n"
    # One prefix per line: a record's text never opens a line of its own...
    log.warning("a\nb")
    assert capsys.readouterr().err == "natt-audit: warning: a\\nb\n"
    # ...unless the message lists one problem per line: then each line is prefixed and inert.
    log.error("f:1: bad\x1b[31m\nf:2: worse", extra=logsetup.multiline_fields())
    assert capsys.readouterr().err == "natt-audit: error: f:1: bad\\x1b[31m\nnatt-audit: error: f:2: worse\n"


def test_library_warnings_and_python_warnings_take_the_same_json_path(capsys: pytest.CaptureFixture[str]) -> None:
    # Before: a library's logged warning reached stderr through logging.lastResort and a
    # warnings.warn through warnings.showwarning, as raw lines that broke --log-format json.
    logsetup.setup_logging(fmt="json")
    try:
        logging.getLogger("spnego._credssp").warning("Received CredSSP error: %s", "\x1b[31mboom")
        logging.getLogger("some.library").info("chatter stays out")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            logsetup.setup_logging(fmt="json")  # inside catch_warnings, as a process starts
            warnings.warn("something deprecated", DeprecationWarning, stacklevel=1)
        lines = capsys.readouterr().err.splitlines()
    finally:
        logsetup.setup_logging()
    docs = [json.loads(line) for line in lines]
    assert [d["level"] for d in docs] == ["warning", "warning"]
    assert docs[0]["msg"] == "Received CredSSP error: \x1b[31mboom"  # escaped on the wire, whole here
    assert "something deprecated" in docs[1]["msg"]
    assert all(line.isascii() for line in lines)
