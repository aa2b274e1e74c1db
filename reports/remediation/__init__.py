"""Remediation plans made from a JSON report: the plan model, the planner, and one writer per format."""

from __future__ import annotations
