"""`natt-audit demo`: start the lab with the built-in estate on loopback, scan it, report."""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

from pydantic import SecretStr

from rules.loader import resolve_policies
from scanner.cli.options import Subparsers
from scanner.cli.output import use_color
from scanner.core.errors import NattError, OutputError
from scanner.core.formats import Format
from scanner.core.models import CollectOptions, Credentials
from scanner.core.wording import count
from scanner.engine.run import ScanRequest, run_scan, write_report
from scanner.engine.scan import summary_line
from scanner.inputs.inventory import load_inventory

log = logging.getLogger("natt_audit")

# The demo estate's account (scanner/lab/estates/demo.yaml); a lab-only credential.
DEMO_USERNAME = "LAB\\auditor"
DEMO_PASSWORD = "Lab-Passw0rd!"  # noqa: S105 - published lab account, accepted only by the simulator
LAB_START_TIMEOUT = 60.0


class LabStartError(NattError):
    """The simulated estate did not start; the message carries the lab's own words."""


def register(subparsers: Subparsers) -> None:
    """Add `demo`."""
    parser = subparsers.add_parser("demo", help="start a simulated estate on loopback and scan it")
    parser.add_argument(
        "--out", default="natt-audit-demo", help="folder for the JSON report (default ./natt-audit-demo)"
    )
    parser.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo with the parsed arguments."""
    return run_demo(out=args.out, color=use_color(args.color))


def demo_estate() -> Path:
    """Return the path of the built-in demo estate file."""
    return Path(str(resources.files("scanner.lab") / "estates" / "demo.yaml"))


class LabProcess:
    """The lab serving an estate in a child process, stopped with SIGTERM."""

    def __init__(self, estate: Path, inventory: Path) -> None:
        self.inventory = inventory
        inventory.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scanner.lab", "serve", str(estate), "--inventory-out", str(inventory)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait_ready(self, timeout: float = LAB_START_TIMEOUT) -> None:
        """Wait until the lab has written its inventory, or raise RuntimeError with its stderr."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.inventory.exists():
                return
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode("utf-8", "replace") if self.process.stderr else ""
                # The lab prefixes its own lines; this message gets natt-audit's: one prefix per line.
                said = "\n".join(line.removeprefix("natt-audit lab: ") for line in err.strip().splitlines())
                raise RuntimeError(f"the lab exited with status {self.process.returncode}: {said}")
            time.sleep(0.05)
        raise RuntimeError(f"the lab did not become ready within {timeout:.0f} s")

    def stop(self) -> None:
        """Stop the lab and reap it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()


def run_demo(*, out: str, color: bool) -> int:
    """Run the demo end to end and return the scan's exit code."""
    folder = Path(out).resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {folder}: {exc.strerror or exc}") from None
    log.info("demo: starting the simulated estate (%s) on 127.0.0.1 ...", demo_estate().name)
    lab = LabProcess(demo_estate(), folder / "inventory.yaml")
    try:
        try:
            lab.wait_ready()
        except RuntimeError as exc:
            raise LabStartError(f"demo: {exc}") from None
        inventory = load_inventory(lab.inventory)
        log.info("demo: scanning %s over WinRM (NTLM, encrypted)", count(len(inventory.targets), "host"))
        request = ScanRequest(
            inventory=inventory,
            policies=resolve_policies([]),
            credentials=Credentials(username=DEMO_USERNAME, password=SecretStr(DEMO_PASSWORD)),
            options=CollectOptions(host_timeout=10.0, connect_timeout=2.0),
        )
        outcome = run_scan(request)
    finally:
        lab.stop()
    try:
        write_report(outcome.header, outcome.hosts, Format.CONSOLE, None, color=color)
        report_path = folder / "report.json"
        try:
            write_report(outcome.header, outcome.hosts, Format.JSON, str(report_path), color=False)
        except OSError as exc:
            raise OutputError(f"cannot write {report_path}: {exc.strerror or exc}") from None
        log.info("%s", summary_line(outcome.header, outcome.code))
    finally:
        outcome.close()
    log.info("demo: JSON report written to %s", report_path)
    log.info(
        "demo: the estate has unreachable and misbehaving hosts on purpose, so exit 3 "
        "(incomplete) and 1 (findings) are the expected outcomes here."
    )
    return outcome.code
