"""Where the broker is and how to log on to it: a Redis URL without a password, the password apart.

The URL names the server (`redis://HOST:PORT/DB`, or `rediss://` for TLS) and may name a Redis
ACL user; its password comes from `NATT_AUDIT_BROKER_PASSWORD` or a password file, never from the
command line or the URL (docs/sites.md#security-model), so it cannot show in `ps`, shell history,
logs or Celery's banner. Nothing here imports Celery.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from pydantic import SecretStr

from scanner.core.errors import NattError
from scanner.inputs.credentials import read_password_file

ENV_BROKER_PASSWORD = "NATT_AUDIT_BROKER_PASSWORD"  # noqa: S105 - the variable's name, not a password
SCHEMES = ("redis", "rediss")

log = logging.getLogger("natt_audit.sites")


class BrokerError(NattError):
    """The broker URL, its password or the broker itself is unusable: nothing was queued (exit 2)."""


@dataclass(frozen=True)
class Broker:
    """A Redis broker: the URL without a password, the password and the TLS trust anchors."""

    url: str  # redis[s]://[user@]host[:port][/db], never a password
    password: SecretStr | None = None
    ca_bundle: str | None = None  # PEM CAs for rediss://; None: the system store

    @property
    def tls(self) -> bool:
        """Return whether the connection is TLS (rediss://)."""
        return self.url.startswith("rediss://")

    def ssl_options(self) -> dict[str, Any] | None:
        """Return the TLS settings Celery and kombu take for rediss://, certificates always verified."""
        if not self.tls:
            return None
        options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        if self.ca_bundle is not None:
            options["ssl_ca_certs"] = self.ca_bundle
        return options

    def __repr__(self) -> str:
        return f"Broker(url={self.url!r}, password={'***' if self.password else None}, ca_bundle={self.ca_bundle!r})"


def _parts(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number 0..65535
    except ValueError as exc:
        raise BrokerError(f"broker URL: {exc}") from None
    return parts


def parse_broker_url(url: str) -> str:
    """Return the URL when it is a Redis URL without a password; BrokerError saying why otherwise."""
    parts = _parts(url)
    if parts.scheme not in SCHEMES:
        raise BrokerError(
            f"broker URL: the scheme must be redis:// or rediss:// (TLS), not {parts.scheme or 'none'}://"
        )
    if parts.password is not None:
        # Never echo the URL: it holds the password.
        raise BrokerError(
            "broker URL: it holds a password; a password never goes in a URL or on the command line: "
            f"give it in {ENV_BROKER_PASSWORD} or a file named by --broker-password-file"
        )
    if not parts.hostname:
        raise BrokerError("broker URL: no host (redis://HOST:PORT/DB)")
    if parts.query or parts.fragment:
        raise BrokerError("broker URL: no query or fragment; give TLS trust with --broker-ca-bundle")
    db = parts.path.lstrip("/")
    if db and not (db.isascii() and db.isdigit() and int(db) < 10_000):
        raise BrokerError(f"broker URL: the path must be a database number (/0), not /{db}")
    return url


def load_broker(url: str, *, environ: Mapping[str, str], password_file: str | None, ca_bundle: str | None) -> Broker:
    """Return the broker with its password from the password file or the environment."""
    parse_broker_url(url)
    password: str | None = None
    if password_file is not None:
        password = read_password_file(password_file)
    elif ENV_BROKER_PASSWORD in environ:
        password = environ[ENV_BROKER_PASSWORD]
        if password == "":
            raise BrokerError(f"{ENV_BROKER_PASSWORD} is set but empty")
    if ca_bundle is not None and not url.startswith("rediss://"):
        raise BrokerError("--broker-ca-bundle is for rediss:// (TLS) brokers; this URL is redis://")
    if password is None:
        log.warning(
            "no broker password (%s or --broker-password-file): anyone who reaches the broker can "
            "queue scans for the workers (docs/sites.md#security-model)",
            ENV_BROKER_PASSWORD,
        )
    return Broker(url=url, password=SecretStr(password) if password is not None else None, ca_bundle=ca_bundle)
