"""Policy language, built-in policies and pure evaluation."""

from __future__ import annotations
