"""Turn raw registry facts into what Windows will do (docs/domain.md#effective-mode). Pure, no I/O."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from scanner.core.models import (
    IPSEC_KEY,
    POLICYAGENT_KEY,
    VALUE_NAME,
    Frozen,
    Observation,
    OsInfo,
    parse_version,
)


class OsFamily(StrEnum):
    """Windows generations that differ in where (and whether) the setting applies."""

    WIN2000 = "win2000"  # NT 5.0: no such setting (KB 885407)
    XP_PRE_SP2 = "xp-pre-sp2"  # NT 5.1 before SP2: value ignored, legacy NAT-T behaves as mode 2
    XP_2003 = "xp-2003"  # NT 5.1 SP2+ and NT 5.2: Services\IPsec
    VISTA_PLUS = "vista-plus"  # NT 6.0 and later: Services\PolicyAgent (KB 926179)
    UNKNOWN = "unknown"  # version string we cannot parse: never guessed from the caption


class Integrity(StrEnum):
    """Whether the stored data is something Windows documents."""

    OK = "ok"
    INVALID_VALUE = "invalid_value"  # REG_DWORD outside 0..2
    INVALID_TYPE = "invalid_type"  # not a REG_DWORD: Windows reads only a 4-byte DWORD
    NOT_APPLICABLE = "not_applicable"  # Windows 2000, XP before SP2
    UNKNOWN = "unknown"  # OS version unparseable: fail closed


EffectiveMode = Literal[0, 1, 2, "unknown", "not_applicable"]


class StrayValue(Frozen):
    """A NAT-T value stored at a key the host's OS ignores."""

    key: str
    name: str
    type: str
    data: int | str | list[str] | None


class Setting(Frozen):
    """The assessed NAT-T setting of one successfully read host."""

    os_family: OsFamily
    applicable_key: str | None
    key_present: bool
    present: bool
    value_name: str | None  # stored spelling; KB 885407 says the name is case-sensitive
    raw_type: str | None
    raw_value: int | str | list[str] | None
    effective_mode: EffectiveMode
    integrity: Integrity
    stray: tuple[StrayValue, ...] = ()

    @property
    def name_canonical(self) -> bool:
        """Return whether the stored value name has the documented spelling."""
        return self.value_name is None or self.value_name == VALUE_NAME


def os_family(os: OsInfo) -> OsFamily:
    """Classify by Version and ServicePackMajorVersion, never by the (localised) caption."""
    parts = parse_version(os.version)
    if parts is None or len(parts) < 2:
        return OsFamily.UNKNOWN
    major, minor = parts[:2]
    sp = os.service_pack or 0
    if major >= 6:
        return OsFamily.VISTA_PLUS
    if major == 5 and minor == 0:
        return OsFamily.WIN2000
    if major == 5 and minor == 1:
        return OsFamily.XP_2003 if sp >= 2 else OsFamily.XP_PRE_SP2
    if major == 5 and minor >= 2:
        return OsFamily.XP_2003
    return OsFamily.UNKNOWN


def applicable_key(family: OsFamily) -> str | None:
    """Return the HKLM subkey Windows reads for this family, or None where none applies."""
    if family is OsFamily.VISTA_PLUS:
        return POLICYAGENT_KEY
    if family is OsFamily.XP_2003:
        return IPSEC_KEY
    return None


def assess(observation: Observation) -> Setting | None:
    """Derive the effective mode and integrity; None when the host could not be read."""
    if observation.error is not None or observation.os is None:
        return None
    family = os_family(observation.os)
    key = applicable_key(family)
    stray = tuple(
        StrayValue(key=read.key, name=read.value.name, type=read.value.type, data=read.value.data)
        for read in observation.keys
        if read.value is not None and (key is None or read.key.lower() != key.lower())
    )
    read = observation.key(key) if key is not None else None
    value = read.value if read is not None else None
    mode: EffectiveMode
    if family is OsFamily.WIN2000:
        mode, integrity = "not_applicable", Integrity.NOT_APPLICABLE
    elif family is OsFamily.XP_PRE_SP2:
        mode, integrity = 2, Integrity.NOT_APPLICABLE
    elif family is OsFamily.UNKNOWN:
        mode, integrity = "unknown", Integrity.UNKNOWN
    elif value is None:
        mode, integrity = 0, Integrity.OK  # absent value or absent key: the Windows default
    elif value.type != "REG_DWORD" or not isinstance(value.data, int):
        mode, integrity = 0, Integrity.INVALID_TYPE  # Windows reads only a 4-byte REG_DWORD
    elif value.data in (0, 1, 2):
        mode, integrity = value.data, Integrity.OK  # type: ignore[assignment]
    else:
        mode, integrity = "unknown", Integrity.INVALID_VALUE
    return Setting(
        os_family=family,
        applicable_key=key,
        key_present=read.key_present if read is not None else False,
        present=value is not None,
        value_name=value.name if value is not None else None,
        raw_type=value.type if value is not None else None,
        raw_value=value.data if value is not None else None,
        effective_mode=mode,
        integrity=integrity,
        stray=stray,
    )
