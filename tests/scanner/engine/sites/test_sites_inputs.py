"""Sites as inputs: the inventory's site field, the broker URL and password rules, the optional extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reports.build import Tally
from reports.model import HostReport
from scanner.core.results import Status
from scanner.engine.sites.broker import BrokerError, load_broker, parse_broker_url
from scanner.inputs.inventory import InventoryError, load_inventory
from tests.support.cliproc import REPO, cli_env


def test_yaml_and_csv_sites_with_defaults(tmp_path: Path) -> None:
    yaml_inv = tmp_path / "i.yaml"
    yaml_inv.write_text("defaults: {site: hq}\nhosts:\n  - {name: a1}\n  - {name: b1, site: dmz-1}\n", encoding="utf-8")
    assert [t.site for t in load_inventory(yaml_inv).targets] == ["hq", "dmz-1"]
    csv_inv = tmp_path / "i.csv"
    csv_inv.write_text("name,site\na1,\nb1,lab.eu\n", encoding="utf-8")
    assert [t.site for t in load_inventory(csv_inv, default_site="main").targets] == ["main", "lab.eu"]
    text_inv = tmp_path / "i.txt"
    text_inv.write_text("a1\n", encoding="utf-8")
    assert load_inventory(text_inv).targets[0].site == "default"


def test_bad_site_is_refused_with_file_and_line(tmp_path: Path) -> None:
    inv = tmp_path / "i.yaml"
    inv.write_text("hosts:\n  - {name: a1}\n  - {name: b1, site: 'no spaces'}\n", encoding="utf-8")
    with pytest.raises(InventoryError) as caught:
        load_inventory(inv)
    assert f"{inv}:3" in str(caught.value) and "site 'no spaces'" in str(caught.value)
    csv_inv = tmp_path / "i.csv"
    csv_inv.write_text("name,site\na1,../etc\n", encoding="utf-8")
    with pytest.raises(InventoryError, match=rf"{csv_inv}:2: site '\.\./etc'"):
        load_inventory(csv_inv)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis://:s3cret@host:6379/0", "holds a password"),
        ("redis://user:s3cret@host/0", "holds a password"),
        ("amqp://host/", "redis:// or rediss://"),
        ("redis://host:6379/zero", "database number"),
        ("redis://host/0?ssl_cert_reqs=none", "no query"),
        ("redis:///0", "no host"),
    ],
)
def test_broker_url_rules(url: str, why: str) -> None:
    with pytest.raises(BrokerError, match=why) as caught:
        parse_broker_url(url)
    assert "s3cret" not in str(caught.value)


def test_broker_password_from_file_or_environment(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\nignored\n", encoding="utf-8")
    secret.chmod(0o600)
    broker = load_broker("redis://user@h:1/2", environ={}, password_file=str(secret), ca_bundle=None)
    assert broker.password is not None and broker.password.get_secret_value() == "from-file"
    assert "from-file" not in repr(broker)
    env = {"NATT_AUDIT_BROKER_PASSWORD": "from-env"}
    assert load_broker("redis://h", environ=env, password_file=None, ca_bundle=None).password is not None
    with pytest.raises(BrokerError, match="rediss://"):
        load_broker("redis://h", environ=env, password_file=None, ca_bundle="ca.pem")


def test_tally_counts_each_site() -> None:
    tally = Tally()
    read = HostReport(
        name="a",
        address="a",
        port=1,
        tags={},
        status=Status.PASS,
        requests=5,
        os=None,
        setting=None,
        error=None,
        results=[],
    )
    tally.add(read, site="x")
    tally.add(read, site="y")
    summary = tally.summary()
    assert summary.sites["x"].hosts == 1 and summary.sites["x"].read == 0 and summary.sites["x"].coverage == 0.0


BLOCK_CELERY = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('celery', 'kombu', 'redis'):
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Block())
import importlib.util
_real = importlib.util.find_spec
BLOCKED = ('celery', 'kombu', 'redis')
importlib.util.find_spec = lambda name, *a: None if name.split('.')[0] in BLOCKED else _real(name, *a)
import pkgutil, scanner, rules, reports
for mod in pkgutil.walk_packages(scanner.__path__, 'scanner.'):
    if mod.name.endswith('__main__') or mod.name.startswith(
        ('scanner.engine.sites.app', 'scanner.engine.sites.coordinator', 'scanner.engine.sites.worker',
         'scanner.engine.sites.logonstate', 'scanner.engine.sites.liveness')
    ):
        continue
    importlib.import_module(mod.name)
from scanner.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_without_celery_scanner_imports_and_broker_names_the_extra(tmp_path: Path) -> None:
    inv = tmp_path / "i.txt"
    inv.write_text("127.0.0.1:9\n", encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCK_CELERY,
            "scan",
            "-i",
            str(inv),
            "--broker",
            "redis://127.0.0.1:1/0",
            "--no-history",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=cli_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'natt-audit[sites]'" in done.stderr
    assert "Traceback" not in done.stderr
