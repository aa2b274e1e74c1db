"""Shared models at the bottom of every layer: targets, observations, results, errors, safe text and files."""
