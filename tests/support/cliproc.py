"""Run the real `natt-audit` CLI in a child process, as a user would, for end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Measured:
    """A finished CLI child: its exit status, output, wall time, CPU time and peak RSS."""

    returncode: int
    stdout: bytes
    stderr: bytes
    wall_s: float
    cpu_s: float
    max_rss_mb: float


# A small launcher between pytest and the CLI: Linux carries a process's peak RSS across fork and
# exec (ru_maxrss starts at the parent's), so a child forked by a large pytest process would
# report pytest's size. The launcher is small; it runs the CLI, wait4()s for it, and prints that
# one child's rusage as JSON.
_LAUNCHER = """
import json, os, subprocess, sys, time
timeout, args = float(sys.argv[1]), sys.argv[2:]
out, err = open(os.environ["NA_OUT"], "wb"), open(os.environ["NA_ERR"], "wb")
started = time.monotonic()
child = subprocess.Popen(args, stdout=out, stderr=err)
while True:
    pid, status, usage = os.wait4(child.pid, os.WNOHANG)
    if pid:
        break
    if time.monotonic() - started > timeout:
        child.kill()
        pid, status, usage = os.wait4(child.pid, 0)
        break
    time.sleep(0.005)
wall = time.monotonic() - started
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "wall": wall,
                  "cpu": usage.ru_utime + usage.ru_stime, "rss_kb": usage.ru_maxrss}))
"""


def run_measured(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> Measured:
    """Run `natt-audit ARGS` and measure that one child (wait4): wall and CPU time, peak RSS."""
    with tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder) / "out", Path(folder) / "err"
        child_env = {**cli_env(env), "NA_OUT": str(out), "NA_ERR": str(err)}
        done = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(timeout), *CLI, *args],
            capture_output=True,
            env=child_env,
            cwd=REPO,
            timeout=timeout + 30,
            check=True,
        )
        figures = json.loads(done.stdout)
        return Measured(
            returncode=figures["rc"],
            stdout=out.read_bytes(),
            stderr=err.read_bytes(),
            wall_s=figures["wall"],
            cpu_s=figures["cpu"],
            max_rss_mb=figures["rss_kb"] / 1024,  # Linux reports kilobytes
        )
