"""What fixing a rule means, declared in the policy's `fix:` block (docs/policies.md#fixes).

A fix names actions, never a registry path: the key it writes is the one that applies to the
host's OS (docs/domain.md#registry-locations), resolved per host when a plan is made, and the
value is always AssumeUDPEncapsulationContextOnSendRule. So a policy file cannot point a plan at
any other key or value.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

# The IPsec Policy Agent reads the value when it starts (KB 885407); its service name is
# PolicyAgent on every Windows version that has the setting (XP SP2+, 2003, Vista and later).
POLICY_AGENT = "PolicyAgent"
# Path-like keys an author might reach for; refused with a message that says why (never a free path).
_PATH_KEYS = ("key", "path", "hive", "name", "value_name")


class _Strict(BaseModel):
    """Base for fix models: unknown fields refused, values immutable (as in rules.models.Strict)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class SetValue(_Strict):
    """Write the value at the key that applies to the host's OS: a REG_DWORD Windows documents."""

    # Windows reads the value only as a REG_DWORD of 0, 1 or 2 (docs/domain.md#invalid-data).
    type: Literal["REG_DWORD"]
    data: Annotated[StrictInt, Field(ge=0, le=2)]


class Fix(_Strict):
    """The actions that fix a failing rule on one host, applied in this order: set, delete, restart."""

    set_value: SetValue | None = None
    # Delete every value at the key the host's OS ignores (docs/domain.md#stray-values).
    delete_strays: StrictBool = False
    # Restart the service after a set_value so the value takes effect (docs/domain.md#restart).
    restart_service: Literal["PolicyAgent"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_path(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in _PATH_KEYS:
                if name in data:
                    raise ValueError(
                        f"a fix takes no `{name}`: it always writes AssumeUDPEncapsulationContextOnSendRule "
                        "at the key that applies to the host's OS (docs/domain.md#registry-locations)"
                    )
        return data

    @model_validator(mode="after")
    def _meaningful(self) -> Fix:
        if self.set_value is None and not self.delete_strays:
            raise ValueError("a fix needs at least one change: set_value, or delete_strays: true")
        if self.restart_service is not None and self.set_value is None:
            raise ValueError(
                "restart_service makes a set_value take effect (KB 885407); without set_value it changes nothing"
            )
        return self
