"""The output formats: one enum drives `--format` choices, the config key and the renderer table."""

from __future__ import annotations

from enum import StrEnum


class Format(StrEnum):
    """Output formats of `natt-audit scan -f` and `export -f`. Each has one module under reports/formats/."""

    # StrEnum (a str and an Enum, ruff UP042): str(Format.JSON) == "json" for argparse choices.

    CONSOLE = "console"  # reports/formats/console.py: rich, for people at a terminal
    JSON = "json"  # reports/formats/json_report.py: the report itself, schema in `natt-audit schema report`
    JSONL = "jsonl"  # reports/formats/jsonl.py: one finding per line
    CSV = "csv"  # reports/formats/csv_report.py: formula-injection safe
    CEF = "cef"  # reports/formats/cef.py: ArcSight Common Event Format, one event per line
    OCSF = "ocsf"  # reports/formats/ocsf.py: OCSF 1.8.0 Compliance Finding (2003), one event per line
    ECS = "ecs"  # reports/formats/ecs.py: Elastic Common Schema posture findings, one document per line
    HEC = "hec"  # reports/formats/hec.py: Splunk HTTP Event Collector events with CIM-named fields
    JUNIT = "junit"  # reports/formats/junit.py: JUnit XML for CI pipelines
    HTML = "html"  # reports/formats/html_report.py: one self-contained page for people


# Formats that export findings (everything but the terminal view); `export -f` offers these.
EXPORT_FORMATS: tuple[Format, ...] = tuple(f for f in Format if f is not Format.CONSOLE)
