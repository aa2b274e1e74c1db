"""Engines that run a scan: collect concurrently, evaluate, and assemble the report stream."""
