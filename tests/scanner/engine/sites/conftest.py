"""A real Redis broker with a password and lab estates for the sites engine tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers.lab import RunningLab, start_lab
from tests.peers.redis_server import RunningRedis, start_redis
from tests.support.cliproc import LAB_PASSWORD
from tests.support.sites import write_estate

LAB_USER = "LAB\\auditor"


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRedis]:
    """A redis-server on a free loopback port with `requirepass`, for one test module."""
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@dataclass(frozen=True)
class Estate:
    """A running lab of generated hosts and its account."""

    lab: RunningLab
    username: str
    password: str

    def creds(self) -> dict[str, str]:
        """Return the environment that gives a worker this estate's account."""
        return {"NATT_AUDIT_USERNAME": self.username, "NATT_AUDIT_PASSWORD": self.password}


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    """150 generated hosts on loopback answering the lab's published account."""
    folder = tmp_path_factory.mktemp("estate")
    path = write_estate(folder / "estate.yaml", prefix="h-", count=150, username=LAB_USER, password=LAB_PASSWORD)
    with start_lab(path, folder / "lab") as lab:
        yield Estate(lab, LAB_USER, LAB_PASSWORD)


def broker_env(redis: RunningRedis, **extra: str) -> dict[str, str]:
    """Return the environment with the broker password (and `extra`)."""
    return {"NATT_AUDIT_BROKER_PASSWORD": redis.password, **extra}


def hosts_of(path: Path) -> list[str]:
    """Return the host names of a lab inventory."""
    import yaml

    return [host["name"] for host in yaml.safe_load(path.read_text(encoding="utf-8"))["hosts"]]
