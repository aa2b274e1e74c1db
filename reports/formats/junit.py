"""Render the report as JUnit XML for CI: one testsuite per host, one testcase per rule."""

from __future__ import annotations

from itertools import groupby
from typing import TextIO

from reports.findings import Finding, flatten
from reports.hosts import Hosts
from reports.model import ReportHeader
from scanner.core.results import Status
from scanner.core.sanitize import xml_attr, xml_text


def _details(finding: Finding) -> str:
    lines = [
        f"host: {finding.host} ({finding.address}:{finding.port})",
        f"rule: {finding.rule_id} {finding.rule_title} [{finding.rule_severity.value}]",
        f"status: {finding.status.value}",
        f"os: {finding.os_caption or '-'} ({finding.os_version or 'not read'})",
        f"message: {finding.message}",
        f"finding_uid: {finding.finding_uid}",
        f"event_uid: {finding.event_uid}",
    ]
    if finding.registry_path is not None:
        lines.append(
            f"registry: {finding.registry_path} {finding.data_type or '-'} {finding.observed or '-'}"
        )
    if finding.error_stage is not None:
        lines.append(f"error: {finding.error_stage}/{finding.error_reason}: {finding.error_message}")
    # Each line is escaped on its own: a line break inside host text is shown as `\n`, never obeyed.
    return "\n".join(xml_text(line) for line in lines)


def _testcase(finding: Finding) -> str:
    head = (
        f'    <testcase classname="{xml_attr(finding.host)}" '
        f'name="{xml_attr(finding.rule_id + " " + finding.rule_title)}" time="0"'
    )
    message = xml_attr(finding.message)
    body = _details(finding)
    if finding.status is Status.FAIL:
        inner = f'<failure type="fail" message="{message}">{body}</failure>'
    elif finding.status is Status.ERROR:
        inner = (
            f'<error type="{xml_attr(finding.error_reason or "error")}" message="{message}">{body}</error>'
        )
    elif finding.status in (Status.WAIVED, Status.NOT_APPLICABLE):
        skipped = f'<skipped message="{xml_attr(finding.status.value + ": " + finding.message)}"/>'
        inner = f"{skipped}<system-out>{body}</system-out>"
    else:
        return head + f"><system-out>{body}</system-out></testcase>"
    return head + f">{inner}</testcase>"


def _counts(cases: list[Finding]) -> dict[str, int]:
    return {
        "tests": len(cases),
        "failures": sum(f.status is Status.FAIL for f in cases),
        "errors": sum(f.status is Status.ERROR for f in cases),
        "skipped": sum(f.status in (Status.WAIVED, Status.NOT_APPLICABLE) for f in cases),
    }


def render(header: ReportHeader, hosts: Hosts, out: TextIO) -> None:
    """Write a JUnit XML document to `out`; waived and not-applicable results are `skipped`."""
    # The root element carries the totals, so the hosts are read twice: once to count, once to
    # write, one host's findings at a time (docs/performance.md, memory).
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for _, group in groupby(flatten(header, hosts), key=lambda f: f.host):
        for key, value in _counts(list(group)).items():
            totals[key] += value
    total_attrs = " ".join(f'{k}="{v}"' for k, v in totals.items())
    out.write(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<testsuites name="natt-audit {xml_attr(header.scan.id)}" {total_attrs} time="0">\n'
    )
    for index, (host, group) in enumerate(groupby(flatten(header, hosts), key=lambda f: f.host)):
        cases = list(group)
        attrs = " ".join(f'{k}="{v}"' for k, v in _counts(cases).items())
        out.write(
            f'  <testsuite id="{index}" name="{xml_attr(host)}" {attrs} time="0" '
            f'timestamp="{xml_attr(header.scan.started_at)}" hostname="{xml_attr(host)}">\n'
            + "".join(_testcase(f) + "\n" for f in cases)
            + "  </testsuite>\n"
        )
    out.write("</testsuites>\n")
