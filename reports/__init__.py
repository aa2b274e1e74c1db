"""Renderers for the scan report: console, JSON and export formats."""

from __future__ import annotations
