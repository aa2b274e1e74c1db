"""Build Observations and policies by hand for the rules tests (pure code: no lab needed)."""

from __future__ import annotations

from typing import Any

from rules.models import Policy
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

WIN10 = OsInfo(version="10.0.19045", build=19045, service_pack=0, caption="Microsoft Windows 10 专业版")
WIN2003 = OsInfo(version="5.2.3790", build=3790, service_pack=2)
XP_SP2 = OsInfo(version="5.1.2600", build=2600, service_pack=2)
XP_SP1 = OsInfo(version="5.1.2600", build=2600, service_pack=1)
WIN2000 = OsInfo(version="5.0.2195", build=2195, service_pack=4)
GARBLED = OsInfo(version="ten", build=None, service_pack=None)


def target(name: str = "host1", address: str = "10.0.0.5", **kw: Any) -> Target:
    """Return an inventory entry."""
    return Target(name=name, address=address, port=5985, **kw)


def observe(
    os: OsInfo = WIN10,
    value: tuple[str, Any] | None = None,
    *,
    stray: tuple[str, Any] | None = None,
    key_present: bool = True,
    name: str = VALUE_NAME,
    tgt: Target | None = None,
) -> Observation:
    """Return what a scan of one host would produce: `value` at the applicable key, `stray` at the other."""
    here, other = (
        (POLICYAGENT_KEY, IPSEC_KEY) if os.version.startswith(("6", "10")) else (IPSEC_KEY, POLICYAGENT_KEY)
    )
    v = RegistryValue(name=name, type=value[0], data=value[1]) if value else None
    s = RegistryValue(name=VALUE_NAME, type=stray[0], data=stray[1]) if stray else None
    return Observation(
        target=tgt or target(),
        requests=5,
        os=os,
        keys=(
            KeyRead(key=here, key_present=key_present or v is not None, value=v),
            KeyRead(key=other, key_present=s is not None, value=s),
        ),
    )


def failed(stage: Stage = Stage.CONNECT, reason: str = "refused") -> Observation:
    """Return the observation of a host that could not be read."""
    return Observation(
        target=target(), requests=1, error=HostError(stage=stage, reason=reason, message="boom")
    )


def rule(rid: str = "T-1", check: Any = None, **kw: Any) -> dict[str, Any]:
    """Return a rule mapping with the required prose filled in."""
    out: dict[str, Any] = {
        "id": rid,
        "title": f"rule {rid}",
        "severity": "medium",
        "rationale": "because",
        "remediation": "fix it",
        "check": check if check is not None else {"fact": "effective_mode", "equals": 0},
    }
    out.update(kw)
    return out


def policy(*rules: dict[str, Any], name: str = "t") -> Policy:
    """Return a validated policy made of these rule mappings."""
    return Policy.model_validate({"name": name, "rules": list(rules)})
