"""README "First scan of a real domain": every command works as written, against the lab.

The lab stands in for the domain: its inventory replaces `hosts.yaml` and its account replaces
`CORP\\svc-natt-audit`; everything else runs exactly as the README prints it, in one shell.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.inputs.inventory import parse_inventory
from tests.peers.lab import RunningLab, start_lab
from tests.support.cliproc import LAB_PASSWORD, REPO, run_cli

SECTION = "## First scan of a real domain"
INSTALL = "python3 -m pip install ."  # the one line not run: the tests run from the repository


def walkthrough() -> str:
    """Return the README section of the walkthrough."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return text[start:end]


def blocks(kind: str) -> list[str]:
    """Return the fenced code blocks of one kind in the walkthrough."""
    return re.findall(rf"```{kind}\n(.*?)```", walkthrough(), flags=re.DOTALL)


@pytest.fixture(scope="module")
def ten_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """Serve a generated estate of ten hosts."""
    work = tmp_path_factory.mktemp("walkthrough-lab")
    estate = run_cli("lab", "generate", "--count", "10", "--prefix", "srv")
    assert estate.returncode == 0, estate.stderr
    (work / "estate.yaml").write_text(estate.stdout, encoding="utf-8")
    with start_lab(work / "estate.yaml", work / "lab") as lab:
        yield lab


def test_the_inventory_shown_is_ten_fqdns() -> None:
    (text,) = blocks("yaml")
    inventory = parse_inventory(text, "hosts.yaml", fmt="yaml")
    assert len(inventory.targets) == 10
    assert all(t.name.endswith(".corp.example.com") and t.port == 5985 for t in inventory.targets)


def test_every_command_of_the_walkthrough_works_against_the_lab(ten_hosts: RunningLab, tmp_path: Path) -> None:
    lines = [line for block in blocks("sh") for line in block.splitlines() if line.strip()]
    assert sum(line.startswith(INSTALL) for line in lines) == 1
    script = "\n".join(line for line in lines if not line.startswith(INSTALL))
    script = script.replace("svc-natt-audit", "auditor").replace("CORP", "LAB")  # the lab's account
    (tmp_path / "hosts.yaml").write_bytes(ten_hosts.inventory.read_bytes())  # the lab's inventory
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "natt-audit"  # what `pip install .` puts on PATH, run from this repository
    shim.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -c "from scanner.cli.main import entry_point; entry_point()" "$@"\n',
        encoding="utf-8",
    )
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NATT_AUDIT_")}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(REPO),
        XDG_STATE_HOME=str(tmp_path / "state"),
        NATT_AUDIT_SPOOL=str(tmp_path / "spool"),
    )
    done = subprocess.run(
        ["bash", "-c", script],
        input=f"{LAB_PASSWORD}\n".encode(),  # typed at `cat > natt-audit.password`
        capture_output=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err
    assert out.startswith("natt-audit 0.1.0\n")
    assert (tmp_path / "natt-audit.password").stat().st_mode & 0o077 == 0
    assert LAB_PASSWORD not in out + err
    # The first scan: the console report on stdout, -v detail and the summary on stderr.
    statuses = re.findall(r"^exit status: (\d+)$", out, flags=re.MULTILINE)
    assert len(statuses) == 2 and set(statuses) <= {"0", "1"}, out
    assert "scan report" in out and "Coverage" in out
    assert "natt-audit: debug: " in err
    summaries = [line for line in err.splitlines() if line.startswith("natt-audit: scanned 10 hosts: ")]
    assert len(summaries) == 2 and all("coverage 100.0%" in line for line in summaries)
    # The config file: every key it sets is shown, from the file; the nightly scan reads it.
    assert 'inventory = "hosts.yaml"  # file natt-audit.toml' in out
    assert 'username = "LAB\\\\auditor"  # file natt-audit.toml' in out
    assert "natt-audit: since scan " in err  # the second scan compares with the first
