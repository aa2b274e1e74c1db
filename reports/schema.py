"""JSON Schema (draft 2020-12) of the JSON report, derived from the pydantic models."""

from __future__ import annotations

import json
from typing import Any

from reports.build import MODE_KEYS
from reports.model import SCHEMA_VERSION, ReportDocument
from scanner.core.results import Status

DRAFT = "https://json-schema.org/draft/2020-12/schema"
# A URN, not a URL: the schema is shipped with the tool and printed by `natt-audit schema report`;
# nothing is ever fetched from it.
OPTIONAL_SECTIONS = ("drift", "waivers", "inventory")
OPTIONAL_SUMMARY = ("auth_rejected",)  # summary counts added after 1.0
SCHEMA_ID = f"urn:natt-audit:schema:report:{SCHEMA_VERSION}"


def _require_all_properties(node: Any) -> None:
    """Mark every property of every object as required: the JSON renderer always writes them all."""
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict) and node.get("type") == "object":
            node["required"] = list(properties)
        for child in node.values():
            _require_all_properties(child)
    elif isinstance(node, list):
        for child in node:
            _require_all_properties(child)


def _counts_object(keys: tuple[str, ...], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": {key: {"type": "integer", "minimum": 0} for key in keys},
        "required": list(keys),
        "additionalProperties": False,
    }


def report_json_schema() -> dict[str, Any]:
    """Return the JSON Schema every `-f json` report validates against."""
    schema: dict[str, Any] = ReportDocument.model_json_schema(mode="serialization")
    _require_all_properties(schema)
    defs = schema["$defs"]
    # Tighten what the models only say in comments (reports/model.py, reports/build.py).
    schema["properties"]["schema_version"] = {"const": SCHEMA_VERSION, "type": "string"}
    # Sections added after 1.0 stay optional, so reports written before them still validate.
    schema["required"] = [name for name in schema["required"] if name not in OPTIONAL_SECTIONS]
    summary = defs["Summary"]["properties"]
    summary["hosts_by_status"] = _counts_object(
        tuple(status.value for status in Status), "hosts per status; every status is a key"
    )
    summary["modes"] = _counts_object(MODE_KEYS, "read hosts per effective mode; every mode is a key")
    summary["coverage"] = {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "description": "hosts read successfully / hosts in the inventory, rounded down to 4 decimals",
    }
    for name in ("hosts_total", "requests_total"):
        summary[name] = {"type": "integer", "minimum": 0}
    summary["auth_rejected"] = {
        "type": "integer",
        "minimum": 0,
        "description": "hosts that rejected the scan account's logon (error auth/unauthorized)",
    }
    defs["Summary"]["required"] = [name for name in defs["Summary"]["required"] if name not in OPTIONAL_SUMMARY]
    # Added after 1.0: optional, so reports written before it still validate.
    defs["ScanInfo"]["required"] = [name for name in defs["ScanInfo"]["required"] if name != "policy_refs"]
    host = defs["HostReport"]["properties"]
    host["port"] = {"type": "integer", "minimum": 1, "maximum": 65535}
    host["requests"] = {"type": "integer", "minimum": 0}
    return {
        "$schema": DRAFT,
        "$id": SCHEMA_ID,
        "title": "natt-audit scan report",
        "description": "The JSON report written by `natt-audit scan -f json`.",
        **{key: value for key, value in schema.items() if key not in ("title", "description")},
    }


def report_json_schema_text() -> str:
    """Return the schema as stable JSON text with a trailing newline (for printing or shipping)."""
    return json.dumps(report_json_schema(), indent=2, ensure_ascii=False) + "\n"
