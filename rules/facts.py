"""Extract the facts a check can read from an Observation and its Setting. Pure, no I/O."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final

from rules.models import FACTS, TAG_PREFIX, Kind
from scanner.core.models import (
    IPSEC_KEY,
    POLICYAGENT_KEY,
    VALUE_NAME,
    KeyRead,
    Observation,
    OsInfo,
    RegistryValue,
    Target,
)
from scanner.core.semantics import Integrity, OsFamily, Setting, assess, os_family


class Sentinel:
    """A fact value that is not a value: unknown (invalid data) or not applicable (no such setting)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self) -> str:
        return self.name.upper()


# Unknown because the data is invalid (docs/domain.md#integrity): any rule reading it fails, never passes.
UNKNOWN: Final = Sentinel("unknown")
# The setting does not exist on this OS (Windows 2000; ignored before XP SP2): the rule is not_applicable.
NOT_APPLICABLE: Final = Sentinel("not_applicable")

Facts = dict[str, Any]  # fact name -> value; "tags" -> dict[str, str]

# KB 885407 names these as the private ranges a NAT hides.
PRIVATE_NETS: Final = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
SETTING_FACTS: Final = (
    "effective_mode",
    "present",
    "key_present",
    "raw_type",
    "raw_value",
    "integrity",
    "value_name",
    "name_canonical",
)
STRAY_FACTS: Final = ("stray", "stray_count")


def _dotted_quad(address: str) -> tuple[int, int] | None:
    # Fast path for the common case, same acceptance as ipaddress (no leading zeros, octets <= 255).
    parts = address.split(".")
    if len(parts) != 4:
        return None
    octets = []
    for p in parts:
        if not (p.isascii() and p.isdigit()) or len(p) > 3 or (len(p) > 1 and p[0] == "0"):
            return None
        octets.append(int(p))
    if max(octets) > 255:
        return None
    return octets[0], octets[1]


def address_private(address: str) -> bool | Sentinel:
    """Return whether an IP literal is in the KB's private ranges; UNKNOWN for a DNS name (never resolved)."""
    quad = _dotted_quad(address)
    if quad is not None:
        a, b = quad
        return a == 10 or (a == 172 and 16 <= b <= 31) or (a == 192 and b == 168)
    return _address_private_slow(address)


@lru_cache(maxsize=4096)
def _address_private_slow(address: str) -> bool | Sentinel:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return UNKNOWN
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return isinstance(ip, ipaddress.IPv4Address) and any(ip in net for net in PRIVATE_NETS)


def host_facts(target: Target, os: OsInfo | None, family: OsFamily | None) -> Facts:
    """Return the facts known from inventory and OS identity alone."""
    return {
        "os.version": os.version if os is not None else None,
        "os.build": os.build if os is not None else None,
        "os.service_pack": os.service_pack if os is not None else None,
        "os.family": family.value if family is not None else None,
        "group": target.group,
        "address": target.address,
        "address_private": address_private(target.address),
        "tags": target.tags,
    }


def extract_facts(observation: Observation, setting: Setting) -> Facts:
    """Return every fact of a host that was read; sentinels mark unknown and not-applicable facts."""
    facts = host_facts(observation.target, observation.os, setting.os_family)
    family = setting.os_family
    if family is OsFamily.UNKNOWN:
        # No applicable key can be known: everything about the setting is unknown (fail closed).
        for name in (*SETTING_FACTS, *STRAY_FACTS):
            facts[name] = UNKNOWN
        return facts
    if family in (OsFamily.WIN2000, OsFamily.XP_PRE_SP2):
        for name in (*SETTING_FACTS, *STRAY_FACTS):
            facts[name] = NOT_APPLICABLE
        if family is OsFamily.XP_PRE_SP2:
            facts["effective_mode"] = setting.effective_mode  # 2: legacy NAT-T behaviour (KB 885407)
        return facts
    mode = setting.effective_mode
    facts["effective_mode"] = (
        UNKNOWN if mode == "unknown" else NOT_APPLICABLE if mode == "not_applicable" else mode
    )
    facts["present"] = setting.present
    facts["key_present"] = setting.key_present
    facts["raw_type"] = setting.raw_type
    raw = setting.raw_value
    facts["raw_value"] = (
        tuple(raw) if isinstance(raw, list) else raw
    )  # immutable, so decisions can be memoised
    integrity = setting.integrity
    facts["integrity"] = (
        UNKNOWN
        if integrity is Integrity.UNKNOWN
        else NOT_APPLICABLE
        if integrity is Integrity.NOT_APPLICABLE
        else integrity.value
    )
    facts["value_name"] = setting.value_name
    facts["name_canonical"] = setting.name_canonical
    facts["stray"] = setting.stray  # tuple of frozen StrayValue
    facts["stray_count"] = len(setting.stray)
    return facts


# ---------------------------------------------------------------------------------------------
# Examples: hypothetical hosts built into real Observations, so they take the real hosts' path.

EXAMPLE_TARGET: Final = Target(name="example", address="192.0.2.10", port=5985)  # TEST-NET-1 (RFC 5737)
EXAMPLE_OS: Final = OsInfo(version="10.0.19045", build=19045, service_pack=0)
_SENTINEL_NAMES: Final = {"unknown": UNKNOWN, "not_applicable": NOT_APPLICABLE}


_KIND_WORDS: Final = {
    Kind.INT: "an integer",
    Kind.BOOL: "true or false",
    Kind.STR: "a string",
    Kind.VERSION: "a version string",
    Kind.ANY: "any value",
    Kind.LIST: "a list of mappings",
}


def _type_ok(name: str, kind: Kind, value: Any) -> bool:
    if value is None or kind is Kind.ANY:
        return True
    if kind is Kind.INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is Kind.BOOL:
        return isinstance(value, bool)
    if kind in (Kind.STR, Kind.VERSION):
        return isinstance(value, str)
    return isinstance(value, list) and all(isinstance(v, Mapping) for v in value)


def _check_example(example: Mapping[str, Any]) -> None:
    for name, value in example.items():
        if not isinstance(name, str):
            raise ValueError(f"example fact names are strings, got {name!r}")
        if name == "tags":
            if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
                raise ValueError("example tags is a mapping of strings")
            continue
        kind = Kind.STR if name.startswith(TAG_PREFIX) and len(name) > len(TAG_PREFIX) else FACTS.get(name)
        if kind is None:
            raise ValueError(
                f"unknown fact {name!r} in example; known: {', '.join(sorted(FACTS))}, tags.<name>"
            )
        if name in ("effective_mode", "integrity") and value in _SENTINEL_NAMES:
            continue
        if not _type_ok(name, kind, value):
            raise ValueError(f"example fact {name} must be {_KIND_WORDS[kind]}, got {value!r}")
        if name == "stray" and len(value) > 1:
            # Value names are unique per key (case-insensitively), so only the other key can hold one.
            raise ValueError("an example host has at most one stray value (at the key its OS ignores)")


def example_observation(example: Mapping[str, Any]) -> Observation:
    """Build the Observation a real scan would produce for a host with these facts."""
    _check_example(example)
    tags = dict(example.get("tags") or {})
    tags.update({k[len(TAG_PREFIX) :]: v for k, v in example.items() if k.startswith(TAG_PREFIX)})
    target = EXAMPLE_TARGET.model_copy(
        update={
            "address": example.get("address", EXAMPLE_TARGET.address),
            "group": example.get("group"),
            "tags": tags,
        }
    )
    version = example.get("os.version", EXAMPLE_OS.version)
    os = OsInfo(
        version=version,
        build=example.get("os.build", EXAMPLE_OS.build if version == EXAMPLE_OS.version else None),
        service_pack=example.get("os.service_pack", EXAMPLE_OS.service_pack),
    )
    family = os_family(os)
    if "os.family" in example and "os.version" not in example:
        # Given a family only: pick a representative version so assess() agrees with it.
        os = os.model_copy(update=_FAMILY_OS.get(example["os.family"], {"version": "x"}))
        family = os_family(os)
    here = POLICYAGENT_KEY if family is OsFamily.VISTA_PLUS else IPSEC_KEY
    other = IPSEC_KEY if here == POLICYAGENT_KEY else POLICYAGENT_KEY
    value = None
    if example.get("present", True) and ("raw_value" in example or "raw_type" in example):
        raw_type = example.get("raw_type") or "REG_DWORD"
        value = RegistryValue(
            name=example.get("value_name") or VALUE_NAME, type=raw_type, data=example.get("raw_value")
        )
    strays = [
        RegistryValue(
            name=str(s.get("name", VALUE_NAME)),
            type=str(s.get("type", "REG_DWORD")),
            data=s.get("data", 2),
        )
        for s in example.get("stray") or []
    ]
    keys = (
        KeyRead(
            key=here, key_present=bool(example.get("key_present", True)) or value is not None, value=value
        ),
        KeyRead(key=other, key_present=bool(strays), value=strays[0] if strays else None),
    )
    return Observation(target=target, os=os, keys=keys)


_FAMILY_OS: Final[dict[str, dict[str, Any]]] = {
    "win2000": {"version": "5.0.2195", "build": 2195, "service_pack": 4},
    "xp-pre-sp2": {"version": "5.1.2600", "build": 2600, "service_pack": 1},
    "xp-2003": {"version": "5.2.3790", "build": 3790, "service_pack": 2},
    "vista-plus": {"version": "10.0.19045", "build": 19045, "service_pack": 0},
    "unknown": {"version": "unparseable", "build": None, "service_pack": None},
}


def example_facts(example: Mapping[str, Any]) -> Facts:
    """Return the facts of an example host: the real extraction, then the example's explicit facts."""
    observation = example_observation(example)
    setting = assess(observation)
    if setting is None:  # pragma: no cover - example observations always carry OS facts
        raise ValueError("example could not be assessed")
    facts = extract_facts(observation, setting)
    for name, value in example.items():
        if name == "tags" or name.startswith(TAG_PREFIX):
            continue
        if name in ("effective_mode", "integrity") and value in _SENTINEL_NAMES:
            facts[name] = _SENTINEL_NAMES[value]
        elif name == "stray":
            continue  # built into the Observation above, so it went through assess() like a real one
        elif name == "address" and "address_private" not in example:
            facts["address"] = value
            facts["address_private"] = address_private(value)
        else:
            facts[name] = value
    return facts
