"""The VERSION of an NTLM CHALLENGE (MS-NLMP 2.2.1.2, 2.2.2.10) and what the collector makes of it."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import spnego

from scanner.collect.collector import known_os
from scanner.collect.wsman.auth import NEGOTIATE_VERSION, challenge_version
from scanner.core.models import CollectOptions, OsInfo, OsSource, Target
from scanner.lab.auth import Acceptor
from tests.scanner.collect.wsman.conftest import PASSWORD, USERNAME


def challenge(version: bytes | None, flags: int = 0xE2898215, payload_at: int = 56) -> bytes:
    """A CHALLENGE with an empty TargetName and an 8-byte TargetInfo at `payload_at`."""
    if version is not None:
        flags |= NEGOTIATE_VERSION
    else:
        flags &= ~NEGOTIATE_VERSION
    head = b"NTLMSSP\x00" + struct.pack("<I", 2)
    head += struct.pack("<HHI", 0, 0, payload_at)  # TargetNameFields
    head += struct.pack("<I", flags) + b"\x11" * 8 + bytes(8)  # flags, ServerChallenge, Reserved
    head += struct.pack("<HHI", 8, 8, payload_at)  # TargetInfoFields
    head += version if version is not None else bytes(8)
    return head + bytes(max(0, payload_at - len(head))) + b"\x00" * 8


def version(major: int, minor: int, build: int) -> bytes:
    return struct.pack("<BBH3xB", major, minor, build, 15)


def test_windows_version_is_read() -> None:
    assert challenge_version(challenge(version(10, 0, 19045))) == (10, 0, 19045)
    assert challenge_version(challenge(version(6, 1, 7601))) == (6, 1, 7601)
    assert challenge_version(b"\x30\x81\x9a" + challenge(version(5, 2, 3790))) == (5, 2, 3790)  # in SPNEGO


@pytest.mark.parametrize(
    "token",
    [
        challenge(None),  # no NTLMSSP_NEGOTIATE_VERSION
        challenge(version(10, 0, 1), payload_at=48),  # flag set, but the payload overlaps offset 48
        challenge(version(10, 0, 1))[:50],  # truncated
        b"NTLMSSP\x00\x03\x00\x00\x00" + bytes(60),  # an AUTHENTICATE, not a CHALLENGE
        b"",
    ],
)
def test_no_version_when_there_is_none(token: bytes) -> None:
    assert challenge_version(token) is None


def test_the_lab_announces_each_host_s_own_version(ntlm_user_file: Path) -> None:
    for announced in ((10, 0, 22631), (5, 1, 2600), None):
        client = spnego.client(USERNAME, PASSWORD, hostname="host", service="http", protocol="ntlm")
        acceptor = Acceptor(announced)
        token = acceptor.step(client.step())
        assert token is not None
        assert challenge_version(token) == announced
        # The acceptor's copy of the CHALLENGE matches the wire, so the AUTHENTICATE's MIC verifies.
        acceptor.step(client.step(token))
        assert acceptor.complete and client.complete


TARGET = Target(name="h", address="127.0.0.1", port=5985)


@pytest.mark.parametrize(
    ("challenge_says", "inventory_says", "expected"),
    [
        ((10, 0, 19045), None, OsInfo(version="10.0.19045", build=19045, source=OsSource.NTLM_CHALLENGE)),
        ((6, 0, 6002), "10.0.1", OsInfo(version="6.0.6002", build=6002, source=OsSource.NTLM_CHALLENGE)),
        ((5, 1, 2600), "10.0.19045", None),  # the host says NT 5.x: read the service pack from WMI
        ((0, 12, 4), None, None),  # pyspnego's package version, not Windows: ignored
        ((0, 12, 4), "6.3.9600", OsInfo(version="6.3.9600", build=9600, source=OsSource.INVENTORY)),
        (None, "6.1", OsInfo(version="6.1", build=None, source=OsSource.INVENTORY)),
        (None, "5.2.3790", None),
        (None, None, None),
    ],
)
def test_known_os(
    challenge_says: tuple[int, int, int] | None, inventory_says: str | None, expected: OsInfo | None
) -> None:
    target = TARGET.model_copy(update={"os_version": inventory_says})
    assert known_os(target, challenge_says, CollectOptions()) == expected
    assert known_os(target, challenge_says, CollectOptions(read_os_always=True)) is None


SP_POLICY = """
name: sp-aware
version: 1
description: XP hosts must run SP3.
rules:
  - id: SP-001
    title: XP has its last service pack
    severity: low
    rationale: test
    remediation: test
    scope: {os_family: {in: [xp-2003]}}
    check: {fact: os.service_pack, greater_than: 2}
"""


def test_a_policy_reading_the_service_pack_forces_the_wmi_read() -> None:
    from pydantic import SecretStr

    from rules.loader import builtin_policy, policy_from_document
    from scanner.core import yamlfile
    from scanner.core.models import Credentials
    from scanner.engine.run import ScanRequest, collect_options
    from scanner.inputs.inventory import Inventory

    def request(*policies: object) -> ScanRequest:
        return ScanRequest(
            inventory=Inventory(path="inv", targets=(TARGET,)),
            policies=list(policies),  # type: ignore[arg-type]
            credentials=Credentials(username="u", password=SecretStr("p")),
        )

    baseline, strict = builtin_policy("baseline"), builtin_policy("strict")
    assert not collect_options(request(baseline, strict)).read_os_always
    sp_aware = policy_from_document(yamlfile.load_text(SP_POLICY, "sp.yaml"))
    assert collect_options(request(baseline, sp_aware)).read_os_always
