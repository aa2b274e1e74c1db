"""docs/domain.md#effective-mode, row by row, on hand-built observations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.core.models import (
    IPSEC_KEY,
    POLICYAGENT_KEY,
    VALUE_NAME,
    HostError,
    KeyRead,
    Observation,
    OsInfo,
    RegistryValue,
    Stage,
    Target,
)
from scanner.core.semantics import Integrity, OsFamily, assess, os_family

TARGET = Target(name="h1", address="127.0.0.1", port=5985)
WIN10 = OsInfo(version="10.0.19045", build=19045, service_pack=0, caption="Microsoft Windows 10 Enterprise")
XP_SP3 = OsInfo(version="5.1.2600", build=2600, service_pack=3, caption="Microsoft Windows XP Professional")


def observe(
    os: OsInfo, ipsec: RegistryValue | None = None, agent: RegistryValue | None = None
) -> Observation:
    return Observation(
        target=TARGET,
        os=os,
        keys=(
            KeyRead(key=IPSEC_KEY, key_present=True, value=ipsec),
            KeyRead(key=POLICYAGENT_KEY, key_present=True, value=agent),
        ),
    )


def dword(data: int) -> RegistryValue:
    return RegistryValue(name=VALUE_NAME, type="REG_DWORD", data=data)


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_documented_dword_is_the_effective_mode(mode: int) -> None:
    setting = assess(observe(WIN10, agent=dword(mode)))
    assert setting is not None
    assert (setting.effective_mode, setting.integrity) == (mode, Integrity.OK)
    assert setting.raw_value == mode and setting.raw_type == "REG_DWORD"


def test_absent_value_is_the_default_zero() -> None:
    setting = assess(observe(WIN10))
    assert setting is not None
    assert (setting.effective_mode, setting.integrity, setting.present) == (0, Integrity.OK, False)


def test_absent_key_is_the_default_zero() -> None:
    obs = Observation(target=TARGET, os=WIN10, keys=(KeyRead(key=POLICYAGENT_KEY, key_present=False),))
    setting = assess(obs)
    assert setting is not None
    assert (setting.effective_mode, setting.key_present) == (0, False)


@pytest.mark.parametrize("data", [3, 4294967295])
def test_out_of_range_dword_is_unknown_and_invalid(data: int) -> None:
    setting = assess(observe(WIN10, agent=dword(data)))
    assert setting is not None
    assert (setting.effective_mode, setting.integrity) == ("unknown", Integrity.INVALID_VALUE)
    assert setting.raw_value == data  # unsigned, never -1


@pytest.mark.parametrize(
    ("rtype", "data"),
    [
        ("REG_SZ", "2"),
        ("REG_QWORD", 2),
        ("REG_BINARY", "02000000"),
        ("REG_MULTI_SZ", ["2"]),
        ("REG_EXPAND_SZ", "2"),
    ],
)
def test_other_types_are_ignored_by_windows(rtype: str, data: object) -> None:
    value = RegistryValue(name=VALUE_NAME, type=rtype, data=data)  # type: ignore[arg-type]
    setting = assess(observe(WIN10, agent=value))
    assert setting is not None
    assert (setting.effective_mode, setting.integrity, setting.raw_type) == (0, Integrity.INVALID_TYPE, rtype)


def test_value_at_the_other_key_is_stray() -> None:
    setting = assess(observe(WIN10, ipsec=dword(2)))
    assert setting is not None
    assert setting.effective_mode == 0
    assert [(s.key, s.data) for s in setting.stray] == [(IPSEC_KEY, 2)]


def test_xp_sp2_and_later_read_the_ipsec_key() -> None:
    setting = assess(observe(XP_SP3, ipsec=dword(1), agent=dword(2)))
    assert setting is not None
    assert (setting.os_family, setting.applicable_key, setting.effective_mode) == (
        OsFamily.XP_2003,
        IPSEC_KEY,
        1,
    )
    assert [s.key for s in setting.stray] == [POLICYAGENT_KEY]


def test_windows_2000_is_not_applicable() -> None:
    setting = assess(observe(OsInfo(version="5.0.2195", service_pack=4), agent=dword(2)))
    assert setting is not None
    assert (setting.effective_mode, setting.integrity, setting.applicable_key) == (
        "not_applicable",
        Integrity.NOT_APPLICABLE,
        None,
    )


@pytest.mark.parametrize("sp", [None, 0, 1])
def test_xp_before_sp2_is_legacy_mode_two(sp: int | None) -> None:
    setting = assess(observe(OsInfo(version="5.1.2600", service_pack=sp), ipsec=dword(0)))
    assert setting is not None
    assert (setting.os_family, setting.effective_mode) == (OsFamily.XP_PRE_SP2, 2)


def test_unreadable_host_has_no_setting() -> None:
    obs = Observation(target=TARGET, error=HostError(stage=Stage.CONNECT, reason="refused", message="x"))
    assert assess(obs) is None


def test_family_comes_from_version_never_caption() -> None:
    liar = OsInfo(version="6.1.7601", service_pack=1, caption="Microsoft Windows 2000 Professional")
    assert os_family(liar) is OsFamily.VISTA_PLUS
    chinese = OsInfo(version="10.0.22631", caption="Microsoft Windows 11 专业版")
    assert os_family(chinese) is OsFamily.VISTA_PLUS


@given(st.text(max_size=20))
def test_any_version_string_classifies_without_raising(version: str) -> None:
    assert isinstance(os_family(OsInfo(version=version)), OsFamily)


def test_unparseable_version_fails_closed() -> None:
    setting = assess(observe(OsInfo(version="garbage"), agent=dword(0)))
    assert setting is not None
    assert (setting.effective_mode, setting.integrity) == ("unknown", Integrity.UNKNOWN)


def test_non_canonical_name_is_reported() -> None:
    value = RegistryValue(name=VALUE_NAME.lower(), type="REG_DWORD", data=1)
    setting = assess(observe(WIN10, agent=value))
    assert setting is not None and not setting.name_canonical and setting.effective_mode == 1
