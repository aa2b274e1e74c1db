"""docs/reliability.md#broken-replies: SOAP faults and broken replies give a specific reason; no exception escapes."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.collect.wsman import wmi
from scanner.collect.wsman.errors import CollectError, HttpStatusError
from scanner.core.models import CollectOptions, Observation
from scanner.engine.pool import collect_all
from tests.peers.hostile_lab import Scanned
from tests.peers.pki import Pki
from tests.peers.rawserver import (
    CREDENTIALS,
    STDREGPROV,
    RawServer,
    Request,
    dword_body,
    envelope,
    fault_body,
    http,
    normal_reply,
    os_body,
    winrm_handler,
)

LAB_CASES = {
    "f-quota-op": ("collect", "quota", "2150859174"),
    "f-quota-shell": ("collect", "quota", "2150859173"),
    "f-access-denied": ("collect", "access_denied", "WSManFault 5"),
    "f-denied-key": ("collect", "access_denied", "StdRegProv"),
    "f-unknown-class": ("collect", "wmi_class", "2150858752"),
    "f-bad-namespace": ("collect", "wmi_class", "2150858778"),
    "f-op-timeout": ("collect", "operation_timeout", "2150858793"),
    "f-relatesto": ("parse", "relates_to", "does not match"),
    "f-malformed": ("parse", "malformed_xml", "not well-formed"),
}


@pytest.mark.parametrize("name", sorted(LAB_CASES))
def test_lab_fault_reason(scanned: Scanned, name: str) -> None:
    error = scanned.hosts[name]["error"]
    stage, reason, words = LAB_CASES[name]
    assert (error["stage"], error["reason"]) == (stage, reason)
    assert words in error["message"]


Reply = Callable[[Request, int], bytes]


def _first(bad: Callable[[Request], bytes]) -> Reply:
    """Answer the first WMI call (the OS Enumerate) with `bad`, the rest normally."""
    return lambda req, n: bad(req) if n == 0 else normal_reply(req)


def _registry(bad: Callable[[Request], bytes]) -> Reply:
    """Answer the OS Enumerate normally and every registry call with `bad`."""
    return lambda req, n: normal_reply(req) if req.action.endswith("/Enumerate") else bad(req)


def _fault(code: str) -> Reply:
    return _first(lambda req: http(500, envelope(req.message_id, fault_body(code))))


def _ok(body: str) -> Callable[[Request], bytes]:
    return lambda req: http(200, envelope(req.message_id, body))


def _pull_for_ever(req: Request, n: int) -> bytes:
    ctx = "<n:EnumerationContext>uuid:1</n:EnumerationContext>"
    name = "EnumerateResponse" if req.action.endswith("/Enumerate") else "PullResponse"
    return http(200, envelope(req.message_id, f"<n:{name}>{ctx}</n:{name}>"))


def _mismatch_then_no_name(req: Request, n: int) -> bytes:
    if req.action.endswith("/Enumerate"):
        return normal_reply(req)
    if req.action.endswith("/GetDWORDValue"):
        return http(200, envelope(req.message_id, dword_body(wmi.RV_TYPE_MISMATCH)))
    body = f'<p:EnumValues_OUTPUT xmlns:p="{STDREGPROV}"><p:ReturnValue>0</p:ReturnValue></p:EnumValues_OUTPUT>'
    return http(200, envelope(req.message_id, body))


# case -> (reply, stage, reason)
CASES: dict[str, tuple[Reply, str, str]] = {
    "code-not-a-number": (_fault("abc"), "collect", "wsman_fault"),
    "code-empty": (_fault(""), "collect", "wsman_fault"),
    "code-negative": (_fault("-5"), "collect", "wsman_fault"),
    "code-huge": (_fault("9" * 40), "collect", "wsman_fault"),
    "code-unknown-number": (_fault("12345"), "collect", "wsman_fault"),
    "fault-without-wsmanfault": (
        _first(
            lambda req: http(
                500, envelope(req.message_id, "<s:Fault><s:Reason><s:Text>x</s:Text></s:Reason></s:Fault>")
            )
        ),
        "collect",
        "wsman_fault",
    ),
    "500-empty-body": (_first(lambda req: http(500, b"")), "collect", "http_500"),
    "500-html-body": (
        _first(lambda req: http(500, b"<html><body>oops</body>", ctype="text/html")),
        "parse",
        "malformed_xml",
    ),
    "500-text-body": (
        _first(lambda req: http(500, b"Internal Server Error", ctype="text/plain")),
        "parse",
        "malformed_xml",
    ),
    "500-envelope-without-fault": (_first(lambda req: http(500, envelope(req.message_id, ""))), "collect", "http_500"),
    "200-empty-body": (_first(lambda req: http(200, b"")), "parse", "malformed_xml"),
    "relates-to-missing": (_first(lambda req: http(200, envelope(None, os_body()))), "parse", "relates_to"),
    "relates-to-other": (_first(lambda req: http(200, envelope(str(uuid.uuid4()), os_body()))), "parse", "relates_to"),
    "not-an-envelope": (_first(lambda req: http(200, b"<Envelope><Body/></Envelope>")), "parse", "missing_element"),
    "no-body": (
        _first(lambda req: http(200, re.sub(rb"<s:Body>.*</s:Body>", b"", envelope(req.message_id, os_body())))),
        "parse",
        "missing_element",
    ),
    "no-enumerate-response": (_first(_ok("<n:Other/>")), "parse", "missing_element"),
    "no-items-end-of-sequence": (
        _first(_ok("<n:EnumerateResponse><w:Items/><w:EndOfSequence/></n:EnumerateResponse>")),
        "parse",
        "missing_element",
    ),
    "no-items-no-context": (_first(_ok("<n:EnumerateResponse/>")), "parse", "missing_element"),
    "pull-for-ever": (_pull_for_ever, "collect", "unexpected_return"),
    "no-version": (_first(_ok(os_body().replace("<Version>10.0.19045</Version>", ""))), "parse", "bad_os_version"),
    "version-not-a-version": (_first(_ok(os_body(version="ten; rm -rf"))), "parse", "bad_os_version"),
    "no-output-element": (_registry(_ok("<n:Nothing/>")), "parse", "missing_element"),
    "no-return-value": (
        _registry(_ok(f'<p:GetDWORDValue_OUTPUT xmlns:p="{STDREGPROV}"/>')),
        "parse",
        "missing_element",
    ),
    "return-value-text": (
        _registry(_ok(dword_body().replace("<p:ReturnValue>1<", "<p:ReturnValue>one<"))),
        "collect",
        "unexpected_return",
    ),
    "success-without-uvalue": (_registry(_ok(dword_body(0))), "parse", "missing_element"),
    "uvalue-out-of-range": (_registry(_ok(dword_body(0, 2**40))), "collect", "unexpected_return"),
    "return-value-unknown": (_registry(_ok(dword_body(1234))), "collect", "unexpected_return"),
    "type-mismatch-but-no-such-name": (_mismatch_then_no_name, "collect", "unexpected_return"),
    "status-line-garbage": (_first(lambda req: b"SSH-2.0-OpenSSH_9.0\r\n\r\n"), "parse", "bad_http"),
    "bad-content-length": (_first(lambda req: b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), "parse", "bad_http"),
    "invalid-utf8": (
        _first(
            lambda req: http(
                200, envelope(req.message_id, os_body("caf\xe9")).replace("caf\xe9".encode(), b"caf\xe9\xff")
            )
        ),
        "parse",
        "malformed_xml",
    ),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Observation]]:
    pki = Pki(tmp_path_factory.mktemp("pki"))
    context = pki.server_context()
    with ExitStack() as stack:
        servers = {
            name: stack.enter_context(RawServer(winrm_handler(reply), tls=context))
            for name, (reply, _, _) in CASES.items()
        }
        targets = [server.target() for server in servers.values()]
        options = CollectOptions(host_timeout=3, connect_timeout=1, ca_bundle=str(pki.ca))
        observations = collect_all(targets, CREDENTIALS, options, concurrency=32)
        yield dict(zip(servers, observations, strict=True))


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_reply_has_a_specific_reason(results: dict[str, Observation], case: str) -> None:
    obs = results[case]
    _, stage, reason = CASES[case]
    assert obs.error is not None, obs
    assert (obs.error.stage.value, obs.error.reason) == (stage, reason), obs.error


def test_non_numeric_code_is_named_in_the_message(results: dict[str, Observation]) -> None:
    error = results["code-not-a-number"].error
    assert error is not None and "non-numeric code 'abc'" in error.message


# ---- fuzz: any reply bytes give a CollectError, never another exception ----------------------------


class _Canned:
    """A wmi.Sender that answers every message with the same bytes (the transport is tested above)."""

    operation_timeout_sec = 20

    def __init__(self, reply: bytes, status: int) -> None:
        self.reply, self.status = reply, status
        from winrm.protocol import Protocol

        self._protocol = Protocol("http://127.0.0.1:9/wsman", username="u", password="p")

    def build_wsman_header(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self._protocol.build_wsman_header(*args, **kwargs)  # type: ignore[no-any-return]

    def send_message(self, message: str) -> bytes:
        match = re.search(r"<a:MessageID>uuid:([^<]+)<", message)
        data = self.reply.replace(b"MSGID", match.group(1).encode() if match else b"")
        if self.status != 200:
            raise HttpStatusError(self.status, data, "x")
        return data


_GOOD = envelope("MSGID", os_body())
_PIECES = st.sampled_from(
    [
        b"<",
        b">",
        b"</",
        b"&",
        b"&#x1B;",
        b"&#0;",
        b"<!DOCTYPE a>",
        b"\xff",
        b"\x00",
        b"<w:Items>",
        b"</s:Body>",
        b'xsi:nil="true"',
        b"]]>",
        b"<![CDATA[",
        b'"',
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.integers(0, len(_GOOD)),
    insert=st.lists(_PIECES, max_size=4),
    status=st.sampled_from([200, 500]),
)
def test_mangled_replies_only_raise_collect_errors(cut: int, insert: list[bytes], status: int) -> None:
    reply = _GOOD[:cut] + b"".join(insert) + _GOOD[cut:]
    sender = _Canned(reply, status)
    for read in (wmi.read_os, lambda s: wmi.get_dword(s, "SYSTEM\\X", "V")):
        reason = "none"
        try:
            read(sender)
        except CollectError as exc:  # the only exception type allowed out of a reply
            reason = exc.reason
        assert reason and reason != "internal_error"
