"""Run the real `natt-audit` CLI in a child process, as a user would, for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from scanner.cli.main import entry_point; entry_point()"]
LAB_PASSWORD = "Lab-Passw0rd!"  # the lab's published account (docs/lab.md)
LAB_CREDS = {"NATT_AUDIT_USERNAME": "LAB\\auditor", "NATT_AUDIT_PASSWORD": LAB_PASSWORD}


def cli_env(extra: Mapping[str, str] | None = None, *, clean: bool = True) -> dict[str, str]:
    """Return this process's environment without NATT_AUDIT_* (when `clean`), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not (clean and k.startswith("NATT_AUDIT_"))}
    env.update(extra or {})
    env["PYTHONPATH"] = str(REPO)
    return env


def run_cli_bytes(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    prefix: Sequence[str] = (),
    clean_env: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run `natt-audit ARGS` (after an optional wrapper `prefix`); capture every byte of its output."""
    return subprocess.run(
        [*prefix, *CLI, *args],
        capture_output=True,
        env=cli_env(env, clean=clean_env),
        timeout=timeout,
        check=False,
        cwd=REPO,
    )


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `natt-audit ARGS` and return its output decoded as text."""
    done = run_cli_bytes(*args, env=env, timeout=timeout)
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")
    )


def natt_audit(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    prefix: list[str] | None = None,
    clean_env: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run `natt-audit ARGS` with a 60 s timeout (the hostile-input tests); capture every byte of its output."""
    return run_cli_bytes(*args, env=env, timeout=timeout, prefix=prefix or (), clean_env=clean_env)
