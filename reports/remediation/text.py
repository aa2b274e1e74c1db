"""Text helpers shared by the plan writers: comments and the data a host reported."""

from __future__ import annotations

import json

from reports.remediation.plan import Observed, RemediationPlan

COMMENT_LIMIT = 200


def comment_text(text: str, limit: int = COMMENT_LIMIT) -> str:
    """Return `text` as printable ASCII for a one-line comment: anything else becomes '?'.

    Used for report-supplied text (a scan id, a policy path) in the comments of every format: no
    line break can end the comment and start code, in YAML, PowerShell, XML or a .reg file.
    """
    clean = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def shown(observed: Observed | None) -> str:
    """Return a before for a comment or message, e.g. REG_SZ "2" or absent (printable ASCII)."""
    if observed is None:
        return "absent"
    data = "(unreadable)" if observed.data is None else json.dumps(observed.data, ensure_ascii=True)
    return comment_text(f"{observed.type} {data}", limit=120)


def header_lines(plan: RemediationPlan) -> list[str]:
    """Return the provenance every format states at its top (no comment marker, printable ASCII)."""
    source = plan.source
    skipped = len({(s.name, s.address) for s in plan.skipped})
    return [
        f"natt-audit {comment_text(plan.tool.version, 40)} remediation plan: AssumeUDPEncapsulationContextOnSendRule",
        f"scan {comment_text(source.scan_id, 80)}, finished {comment_text(source.finished_at, 40)}",
        f"policies: {comment_text(', '.join(source.policies))}",
        f"{len(plan.hosts)} hosts to change; {skipped} hosts left out in whole or part (see the json plan for why)",
    ]
