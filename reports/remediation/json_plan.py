"""The `json` plan format: the plan itself, deterministic, with a published JSON Schema."""

from __future__ import annotations

import json
from typing import Any

from reports.formats.json_report import to_plain
from reports.remediation.plan import PLAN_SCHEMA_VERSION, RemediationPlan

FILE = "plan.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
# A URN, not a URL: the schema ships with the tool (`natt-audit schema remediation`); nothing is fetched.
SCHEMA_ID = f"urn:natt-audit:schema:remediation:{PLAN_SCHEMA_VERSION}"


def render(plan: RemediationPlan) -> str:
    """Return the plan as JSON: model field order, 2-space indent, ASCII only (\\uXXXX escapes), newline."""
    # ensure_ascii: host-supplied text (a REG_SZ before, a stored name) reaches no viewer as a raw
    # control, bidi or invisible character, and a JSON parser still gets it back exactly.
    return json.dumps(to_plain(plan), indent=2, ensure_ascii=True, allow_nan=False) + "\n"


def write(plan: RemediationPlan) -> dict[str, bytes]:
    """Return the files of this format: plan.json."""
    return {FILE: render(plan).encode("ascii")}


def _require_all(node: Any) -> None:
    """Mark every property of every object as required: the writer always writes them all."""
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict) and node.get("type") == "object":
            node["required"] = list(properties)
        for child in node.values():
            _require_all(child)
    elif isinstance(node, list):
        for child in node:
            _require_all(child)


def plan_json_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) every plan.json validates against."""
    schema: dict[str, Any] = RemediationPlan.model_json_schema(mode="serialization")
    _require_all(schema)
    return {
        "$schema": DRAFT,
        "$id": SCHEMA_ID,
        "title": "natt-audit remediation plan",
        "description": "The plan written by `natt-audit remediate -f json`: per host, the before and the after.",
        **{key: value for key, value in schema.items() if key not in ("title", "description")},
    }
