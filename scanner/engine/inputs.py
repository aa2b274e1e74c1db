"""Load and check a scan's inputs before the first packet: inventory, policies, waivers, account, exports."""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reports.export.destinations import Destination, Kind, load_token, parse_destination
from reports.export.spool import SpoolError, default_spool_dir
from reports.remediation.source import load_report
from rules.loader import Policy, resolve_policies
from rules.waivers import WaiverSet, load_waivers
from scanner.collect.wsman.kerberos import usable_cache
from scanner.core.bounded import InputFileError, read_bounded
from scanner.core.errors import OutputError
from scanner.core.models import KERBEROS_METHODS, AuthMethod, CollectOptions, Credentials
from scanner.core.private import StateError, check_output_dir, private_dir
from scanner.core.results import Status
from scanner.engine.collector import Collector
from scanner.engine.run import stage
from scanner.engine.sites import open_coordinator
from scanner.engine.targets import Recorded, rebuild_targets
from scanner.inputs.config import Config, ConfigError, database_path, redact
from scanner.inputs.credentials import ENV_PASSWORD, ENV_USERNAME, load_credentials
from scanner.inputs.inventory import Inventory, InventoryError
from scanner.inputs.sources.compose import load_with_sources

log = logging.getLogger("natt_audit.engine")


@dataclass(frozen=True)
class ScanInputs:
    """Every input of a scan, loaded and validated."""

    inventory: Inventory
    policies: list[Policy]
    waivers: WaiverSet | None
    credentials: Credentials | None  # None with --broker: each site's workers hold their own (docs/sites.md)
    destinations: list[Destination]
    collector: Collector | None = None  # the sites engine's coordinator with --broker; None: the local pool


def _load_waivers(paths: list[str]) -> WaiverSet | None:
    """Load every waivers file into one set (the report names them all)."""
    if not paths:
        return None
    sets = [load_waivers(path) for path in paths]
    if len(sets) == 1:
        return sets[0]
    return WaiverSet(path=", ".join(w.path for w in sets), waivers=tuple(c for w in sets for c in w.waivers))


def _credentials(
    config: Config, environ: Mapping[str, str], stdin_isatty: bool, transports: set[AuthMethod] | None = None
) -> Credentials:
    env = dict(environ)
    # The config may name other variables for the account; load_credentials reads the standard ones.
    for standard, chosen in (
        (ENV_USERNAME, config.credentials.username_env),
        (ENV_PASSWORD, config.credentials.password_env),
    ):
        if chosen != standard:
            env.pop(standard, None)
            if chosen in environ:
                env[standard] = environ[chosen]
    return load_credentials(
        password_file=config.credentials.password_file,
        environ=env,
        stdin_isatty=stdin_isatty,
        username=config.credentials.username,
        keytab=config.credentials.keytab,
        transports=transports,
        ticket_cache=usable_cache,
    )


def _check_kerberos_names(config: Config, inventory: Inventory) -> None:
    """Refuse negotiate hosts Kerberos cannot name when the NTLM fallback is off (file:line, exit 2)."""
    if config.ntlm_fallback:
        return
    problems = [
        f"{target.source or inventory.path}: {target.name} is an IP address: with --no-ntlm-fallback, transport"
        " negotiate needs the host's name or an spn (docs/authentication.md#spns)"
        for target in inventory.targets
        if target.transport is AuthMethod.NEGOTIATE and target.spn is None and _is_address(target.name)
    ]
    if problems:
        raise InventoryError(problems)


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def scan_credentials(
    config: Config, environ: Mapping[str, str], *, stdin_isatty: bool, ticket_cache_allowed: bool = False
) -> Credentials:
    """Return the scan account as `scan` loads it; site workers and `remediate --apply` load theirs the same way.

    `ticket_cache_allowed`: with no password and no keytab, take the Kerberos ticket cache
    (KRB5CCNAME or the default) as `scan` does for an all-Kerberos inventory; a site worker does
    not know its hosts' transports before its first batch, so it asks for this explicitly.
    """
    transports = set(KERBEROS_METHODS) if ticket_cache_allowed and config.credentials.keytab is None else None
    return _credentials(config, environ, stdin_isatty, transports)


def collect_options(config: Config) -> CollectOptions:
    """Return the per-host limits, TLS and authentication settings of the configuration."""
    return CollectOptions(
        host_timeout=config.timeouts.host,
        connect_timeout=min(config.timeouts.connect, config.timeouts.host),
        ca_bundle=config.ca_bundle,
        verify_tls=not config.insecure_skip_tls_verify,
        tls_min_version=config.tls_min_version,
        legacy_port_fallback=config.legacy_port_fallback,
        ntlm_fallback=config.ntlm_fallback,
    )


MAX_CA_BYTES = 16 * 1024 * 1024  # a CA bundle of every public root is ~250 KB


def _check_ca_file(path: str, what: str) -> None:
    """Refuse a CA file that is missing, not a regular file, too large or holds no PEM certificate."""
    try:
        data = read_bounded(path, MAX_CA_BYTES)
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=data.decode("ascii"))
    except InputFileError as exc:
        raise ConfigError(f"{what} {exc}") from None
    except (UnicodeDecodeError, ValueError, ssl.SSLError):
        raise ConfigError(f"{what} {path}: holds no PEM certificate") from None


def _output_folder(path: str, what: str) -> None:
    if os.path.isdir(path):
        raise OutputError(f"{what}: {path} is a folder; give a file name")
    try:
        check_output_dir(Path(path).parent if str(Path(path).parent) else Path("."), what)
    except StateError as exc:
        raise OutputError(str(exc)) from None


def preflight(config: Config, destinations: list[Destination], environ: Mapping[str, str]) -> None:
    """Check everything the scan will write or read later, before the first host costs a logon.

    The report's folder (-o), the history database's folder (made 0700 if new), export files and
    the spool, CA bundles. Found only after the scan, any of these would have spent every logon
    for a report that cannot be written (docs/security.md#inputs-and-the-machine).
    """
    if config.output:
        _output_folder(config.output, "-o/--output")
    if config.history:
        db = database_path(config, environ)
        private_dir(db.parent if str(db.parent) else ".")  # StateError (exit 2) when shared
    if config.ca_bundle:
        _check_ca_file(config.ca_bundle, "--ca-bundle")
    for destination in destinations:
        if destination.kind is Kind.FILE and destination.path is not None:
            _output_folder(destination.path, f"--export {destination.path}")
        if destination.ca_file is not None:
            _check_ca_file(destination.ca_file, f"--export {redact(destination.text)}: ca=")
    if destinations:
        spool = default_spool_dir()
        try:
            private_dir(spool)
        except StateError as exc:
            raise SpoolError(f"the export spool: {exc}") from None


def load_inputs(config: Config, environ: Mapping[str, str], *, stdin_isatty: bool) -> ScanInputs:
    """Load and validate every input of a scan, then `preflight`; any problem raises a NattError (exit 2)."""
    if config.inventory is None:
        raise ConfigError("no inventory: give -i/--inventory, `inventory` in the config file, or NATT_AUDIT_INVENTORY")
    with stage("inputs"):
        policies = resolve_policies(config.policies)
        waivers = _load_waivers(config.waivers)
        # A YAML inventory's `sources:` are resolved here, before any host is contacted (exit 2 on failure).
        inventory = load_with_sources(config.inventory, environ=environ, default_site=config.default_site)
        _check_kerberos_names(config, inventory)
        transports = {target.transport for target in inventory.targets}
        # With --broker the coordinator reads no host: it needs no account, so asks for none.
        credentials = None if config.broker else _credentials(config, environ, stdin_isatty, transports)
        destinations = [parse_destination(text) for text in config.exports]
        for destination in destinations:
            if destination.is_network and destination.kind is Kind.HEC:
                load_token(destination, environ)  # refuse a missing token now, not after the scan
        preflight(config, destinations, environ)
        collector: Collector | None = None
        if config.broker:
            # Logged on now: a wrong broker password is exit 2 before anything is queued.
            collector = open_coordinator(
                config.broker,
                collect_options(config),
                environ=environ,
                password_file=config.broker_password_file,
                ca_bundle=config.broker_ca_bundle,
                site_timeout=config.timeouts.site,
                grace=config.timeouts.grace,
                deadline=config.timeouts.deadline,
                max_auth_failures=config.max_auth_failures,
            )
    log.debug(
        "inputs: %d hosts from %s, policies %s, %d waivers file(s), %d export destination(s)",
        len(inventory.targets),
        inventory.path,
        ", ".join(p.name for p in policies),
        len(config.waivers),
        len(destinations),
    )
    return ScanInputs(inventory, policies, waivers, credentials, destinations, collector)


def load_failing_inputs(
    config: Config, environ: Mapping[str, str], report_path: str, *, stdin_isatty: bool
) -> ScanInputs | None:
    """Load the inputs of `scan --only-failing REPORT.json`: the report's failing hosts; None when it has none.

    Targets are rebuilt from the report (scanner/engine/targets.py): from the inventory's entries
    when one is configured, else from the recorded name, address and port. The policies are the
    configured ones, else the report's. The scan's inventory is the report itself, so its history
    (drift, resume) is that of the report's failing hosts, never mixed with the full inventory's.
    """
    with stage("inputs"):
        report = load_report(report_path)
        failing = [
            Recorded(host.name, host.address, host.port) for host in report.hosts if host.status is Status.FAIL
        ]
        if not failing:
            return None
        policies = resolve_policies(config.policies or report.header.scan.policies)
        waivers = _load_waivers(config.waivers)
        listed = (
            load_with_sources(config.inventory, environ=environ, default_site=config.default_site)
            if config.inventory is not None
            else None
        )
        rebuilt = rebuild_targets(failing, source=report_path, inventory=listed, same_address=False)
        warnings = (*(listed.warnings if listed is not None else ()), *rebuilt.warnings)
        inventory = Inventory(path=report_path, targets=rebuilt.targets, warnings=warnings)
        credentials = _credentials(config, environ, stdin_isatty)
        destinations = [parse_destination(text) for text in config.exports]
        for destination in destinations:
            if destination.is_network and destination.kind is Kind.HEC:
                load_token(destination, environ)
    log.debug(
        "inputs: %d failing hosts of %s (%d rebuilt), policies %s",
        len(failing),
        report_path,
        len(rebuilt.targets),
        ", ".join(p.name for p in policies),
    )
    return ScanInputs(inventory, policies, waivers, credentials, destinations)
