"""One small lab for the in-process engine and CLI tests, and inventories cut from it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.peers.lab import RunningLab, start_lab
from tests.support.cliproc import LAB_CREDS

ESTATE = Path(__file__).with_name("scanlab.yaml")


@dataclass(frozen=True)
class ScanLab:
    """The running lab and a way to write an inventory of some of its hosts."""

    lab: RunningLab
    folder: Path

    def inventory(self, *names: str, file: str | None = None) -> Path:
        """Write an inventory of these hosts (in this order) and return its path."""
        data = yaml.safe_load(self.lab.inventory.read_text(encoding="utf-8"))
        hosts = {h["name"]: h for h in data["hosts"]}
        data["hosts"] = [hosts[name] for name in names]
        path = self.folder / (file or f"inv-{'-'.join(names)}.yaml")
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return path


@pytest.fixture(scope="session")
def scan_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScanLab]:
    """Serve tests/scanner/scanlab.yaml on loopback for the whole session."""
    folder = tmp_path_factory.mktemp("scanlab")
    with start_lab(ESTATE, folder / "lab") as lab:
        yield ScanLab(lab, folder)


@pytest.fixture
def lab_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A clean NATT_AUDIT_* environment with the lab's account; state and spool under tmp_path."""
    for name in list(os.environ):
        if name.startswith("NATT_AUDIT_") and name != "NATT_AUDIT_TEST_STATE":
            monkeypatch.delenv(name)
    for name, value in LAB_CREDS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("NATT_AUDIT_SPOOL", str(tmp_path / "spool"))
    monkeypatch.delenv("NO_COLOR", raising=False)
    return tmp_path
