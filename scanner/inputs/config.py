"""Configuration for nightly runs: defaults < TOML file < NATT_AUDIT_* environment < flags.

Every key is documented in docs/config.md. The file is strict (pydantic `extra="forbid"`, errors
as `file:line: key: problem`), and it may never hold a password: a `password` key anywhere is
refused with a message that says where the password goes instead.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError

from scanner.core import validation
from scanner.core.bounded import InputFileError, read_bounded
from scanner.core.errors import NattError
from scanner.core.formats import Format
from scanner.core.models import DEFAULT_CONCURRENCY, DEFAULT_MAX_AUTH_FAILURES, DEFAULT_SITE, Strict, site_problem
from scanner.core.results import Severity
from scanner.inputs.credentials import ENV_PASSWORD, ENV_USERNAME

ENV_PREFIX = "NATT_AUDIT_"
ENV_CONFIG = "NATT_AUDIT_CONFIG"
MAX_CONFIG_BYTES = 1024 * 1024
SECRET_KEYS = frozenset({"password", "passwd", "pwd", "secret"})
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


class ConfigError(NattError):
    """The configuration is unusable; str() is `where: problem`, one problem per line."""


def parse_duration(value: object) -> float:
    """Return seconds from 90, 90.5, "90s", "45m", "2h" or "1h30m"; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like 90s, 45m, 2h, 1h30m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            match = _DURATION.fullmatch(text)
            if not text or match is None or not any(match.groups()):
                raise ValueError(
                    f"{value!r} is not a duration; use seconds or text like 90s, 45m, 2h, 1h30m"
                ) from None
            h, m, s = (float(g) if g else 0.0 for g in match.groups())
            seconds = h * 3600 + m * 60 + s
    else:
        raise ValueError("a duration is a number of seconds or text like 90s, 45m, 2h, 1h30m")
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError("a duration must be greater than 0")
    return seconds


def format_duration(seconds: float) -> str:
    """Return seconds as text parse_duration reads back: 5400 -> "1h30m", 90 -> "1m30s"."""
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((h, "h"), (m, "m"), (s, "s")) if n) or "0s"


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _site_name(value: str) -> str:
    why = site_problem(value)
    if why:
        raise ValueError(f"site {value!r} {why}")
    return value


SiteName = Annotated[str, AfterValidator(_site_name)]


class CredentialSettings(Strict):
    """Where the scan account comes from; never the password itself."""

    username: str | None = None
    username_env: str = ENV_USERNAME
    password_file: str | None = None
    password_env: str = ENV_PASSWORD
    keytab: str | None = None  # a client keytab: Kerberos logs on with its key (docs/authentication.md)


class TimeoutSettings(Strict):
    """Per-host limits and the limits of the whole run."""

    host: float = Field(default=30.0, gt=0)
    connect: float = Field(default=5.0, gt=0)
    deadline: Duration | None = None
    grace: float = Field(default=10.0, ge=0)
    # Distributed scans (docs/sites.md): how long a site may show no live worker before its hosts
    # are reported as site/no_collector.
    site: float = Field(default=120.0, gt=0)


class Config(Strict):
    """The effective configuration of a scan."""

    inventory: str | None = None
    inventory_id: str | None = None
    policies: list[str] = Field(default_factory=list)
    waivers: list[str] = Field(default_factory=list)
    waiver_warn_days: int = Field(default=14, ge=1)
    exports: list[str] = Field(default_factory=list)
    database: str | None = None
    history: bool = True
    concurrency: int = Field(default=DEFAULT_CONCURRENCY, ge=1)
    # The lockout breaker: hosts rejecting the logon, with none accepting it, before the scan stops
    # (docs/authentication.md#lockout-safety). Keep it below the domain's lockout threshold.
    max_auth_failures: int = Field(default=DEFAULT_MAX_AUTH_FAILURES, ge=1)
    fail_on: Severity = Severity.LOW
    min_coverage: float = Field(default=1.0, ge=0.0, le=1.0)
    baseline_min_coverage: float = Field(default=0.5, ge=0.0, le=1.0)
    log_format: Literal["plain", "json"] = "plain"
    format: Format = Format.CONSOLE
    output: str | None = None
    ca_bundle: str | None = None
    insecure_skip_tls_verify: bool = False
    tls_min_version: Literal["1.0", "1.1", "1.2"] = "1.2"
    legacy_port_fallback: bool = False
    ntlm_fallback: bool = True  # transport negotiate may use NTLM where Kerberos cannot (--no-ntlm-fallback)
    color: Literal["auto", "always", "never"] = "auto"
    credentials: CredentialSettings = Field(default_factory=CredentialSettings)
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    # The distributed engine (docs/sites.md): a broker URL turns it on; never a password in it.
    default_site: SiteName = DEFAULT_SITE
    broker: str | None = None
    broker_password_file: str | None = None
    broker_ca_bundle: str | None = None


def _split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")


@dataclass(frozen=True)
class Key:
    """One configuration key: its dotted name, environment variable and how to parse that text."""

    # Flags are not listed here: the command line hands its values over by key name (`flags` of
    # `load_config`, scanner/cli/options.py), so no argparse destination is part of the layering.

    name: str
    env: str | None
    parse: Callable[[str], object] = str


KEYS: tuple[Key, ...] = (
    Key("inventory", "NATT_AUDIT_INVENTORY"),
    Key("inventory_id", "NATT_AUDIT_INVENTORY_ID"),
    Key("policies", "NATT_AUDIT_POLICIES", _split_list),
    Key("waivers", "NATT_AUDIT_WAIVERS", _split_list),
    Key("waiver_warn_days", "NATT_AUDIT_WAIVER_WARN_DAYS"),
    Key("exports", "NATT_AUDIT_EXPORTS", _split_list),
    Key("database", "NATT_AUDIT_DATABASE"),
    Key("history", "NATT_AUDIT_HISTORY", _bool),
    Key("concurrency", "NATT_AUDIT_CONCURRENCY"),
    Key("max_auth_failures", "NATT_AUDIT_MAX_AUTH_FAILURES"),
    Key("fail_on", "NATT_AUDIT_FAIL_ON"),
    Key("min_coverage", "NATT_AUDIT_MIN_COVERAGE"),
    Key("baseline_min_coverage", "NATT_AUDIT_BASELINE_MIN_COVERAGE"),
    Key("log_format", "NATT_AUDIT_LOG_FORMAT"),
    Key("format", "NATT_AUDIT_FORMAT"),
    Key("output", "NATT_AUDIT_OUTPUT"),
    Key("ca_bundle", "NATT_AUDIT_CA_BUNDLE"),
    Key("insecure_skip_tls_verify", "NATT_AUDIT_INSECURE_SKIP_TLS_VERIFY", _bool),
    Key("tls_min_version", "NATT_AUDIT_TLS_MIN_VERSION"),
    Key("legacy_port_fallback", "NATT_AUDIT_LEGACY_PORT_FALLBACK", _bool),
    Key("ntlm_fallback", "NATT_AUDIT_NTLM_FALLBACK", _bool),
    Key("color", "NATT_AUDIT_COLOR"),
    Key("default_site", "NATT_AUDIT_DEFAULT_SITE"),
    Key("broker", "NATT_AUDIT_BROKER"),
    Key("broker_password_file", "NATT_AUDIT_BROKER_PASSWORD_FILE"),
    Key("broker_ca_bundle", "NATT_AUDIT_BROKER_CA_BUNDLE"),
    Key("credentials.username", None),  # the username's env variable is credentials.username_env
    Key("credentials.username_env", None),
    Key("credentials.password_file", "NATT_AUDIT_PASSWORD_FILE"),
    Key("credentials.password_env", None),
    Key("credentials.keytab", "NATT_AUDIT_KEYTAB"),
    Key("timeouts.host", "NATT_AUDIT_HOST_TIMEOUT"),
    Key("timeouts.connect", "NATT_AUDIT_CONNECT_TIMEOUT"),
    Key("timeouts.deadline", "NATT_AUDIT_DEADLINE"),
    Key("timeouts.grace", "NATT_AUDIT_GRACE"),
    Key("timeouts.site", "NATT_AUDIT_SITE_TIMEOUT"),
)
KEY_NAMES = frozenset(key.name for key in KEYS)


@dataclass(frozen=True)
class Loaded:
    """The effective configuration and where each key's value came from."""

    config: Config
    sources: Mapping[str, str]  # dotted key -> "default", "file PATH", "env NAME", "flag"
    path: str | None


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in ("credentials", "timeouts"):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        head, _, tail = dotted.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = value
        else:
            nested[head] = value
    return nested


def _key_line(text: str, loc: tuple[str | int, ...]) -> int | None:
    """Return the line where the dotted key `loc` is set in TOML text (best effort)."""
    names = [str(part) for part in loc if isinstance(part, str)]
    if not names:
        return None
    table: list[str] = []
    header = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\s*(?:#.*)?$")
    assign = re.compile(r"^\s*([A-Za-z0-9_.\-\"']+)\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        found = header.match(line)
        if found:
            table = [p.strip().strip("\"'") for p in found.group(1).split(".")]
            if table == names:
                return number
            continue
        found = assign.match(line)
        if found:
            key = [p.strip().strip("\"'") for p in found.group(1).split(".")]
            full = table + key
            if full == names[: len(full)] and len(full) <= len(names):
                return number
    return None


def _refuse_secrets(data: Mapping[str, Any], text: str, where: str, prefix: tuple[str, ...] = ()) -> None:
    for key, value in data.items():
        if key.lower() in SECRET_KEYS:
            line = _key_line(text, (*prefix, key))
            at = f"{where}:{line}" if line else where
            raise ConfigError(
                f"{at}: {'.'.join((*prefix, key))}: a password must never be stored in the config file; "
                f"give credentials.password_file (a file only the scan account can read) or the "
                f"{ENV_PASSWORD} environment variable instead"
            )
        if isinstance(value, dict):
            _refuse_secrets(value, text, where, (*prefix, key))


def _errors(
    exc: ValidationError,
    describe: Callable[[tuple[str | int, ...]], str],
    order: Callable[[tuple[str | int, ...]], int] = lambda loc: 0,
) -> ConfigError:
    lines = []
    for loc, message in validation.problems(exc, Config, unknown="unknown key"):
        if message.startswith("unknown key"):
            message += " (see docs/config.md for every key)"
        lines.append((order(loc), f"{describe(loc)}: {validation.dotted(loc)}: {message}"))
    return ConfigError("\n".join(text for _, text in sorted(lines, key=lambda item: item[0])))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Return the keys a TOML config file sets (dotted names), validated; ConfigError otherwise."""
    where = str(path)
    try:
        raw = read_bounded(path, MAX_CONFIG_BYTES)
    except InputFileError as exc:
        if exc.too_large:
            raise ConfigError(f"{where}: larger than {MAX_CONFIG_BYTES} bytes; not a config file") from None
        raise ConfigError(f"{where}: cannot read the config file: {exc.reason}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 (byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        if message.endswith("(at end of document)"):
            last = max(1, len(text.splitlines()))
            raise ConfigError(f"{where}:{last}: {message.removesuffix('(at end of document)').strip()}") from None
        found = re.search(r"\(at line (\d+), column (\d+)\)", message)
        if found:
            clean = message[: found.start()].strip()
            raise ConfigError(f"{where}:{found.group(1)}:{found.group(2)}: {clean}") from None
        raise ConfigError(f"{where}: {message}") from None
    _refuse_secrets(data, text, where)
    try:
        model = Config.model_validate(data)
    except ValidationError as exc:

        def describe(loc: tuple[str | int, ...]) -> str:
            line = _key_line(text, loc)
            return f"{where}:{line}" if line else where

        raise _errors(exc, describe, lambda loc: _key_line(text, loc) or 0) from None
    return _flatten(model.model_dump(mode="python", exclude_unset=True))


def _env_values(environ: Mapping[str, str]) -> dict[str, tuple[object, str]]:
    values: dict[str, tuple[object, str]] = {}
    for key in KEYS:
        if key.env is not None and key.env in environ:
            try:
                values[key.name] = (key.parse(environ[key.env]), f"env {key.env}")
            except ValueError as exc:
                raise ConfigError(f"{key.env}: {exc}") from None
    return values


def _flag_values(flags: Mapping[str, object] | None) -> dict[str, tuple[object, str]]:
    values: dict[str, tuple[object, str]] = {}
    for name, value in (flags or {}).items():
        if name not in KEY_NAMES:
            # A programming error, never a user's: the CLI named a key that does not exist.
            raise KeyError(f"{name!r} is not a configuration key (docs/config.md)")
        if value is None or value == []:
            continue  # the flag was not given
        values[name] = (value, "flag")
    return values


def load_config(
    *, path: str | None, environ: Mapping[str, str], flags: Mapping[str, object] | None = None
) -> Loaded:
    """Return the effective configuration: defaults < file < environment < flags."""
    # `flags` maps configuration key names (`timeouts.host`, not an argparse dest) to the values
    # given on the command line; None or [] means "not given". An unknown name is a KeyError.
    if path is None:
        path = environ.get(ENV_CONFIG) or None
    merged: dict[str, object] = {}
    sources: dict[str, str] = {}
    if path is not None:
        for name, value in read_config_file(path).items():
            merged[name] = value
            sources[name] = f"file {path}"
    for name, (value, source) in (_env_values(environ) | _flag_values(flags)).items():
        merged[name] = value
        sources[name] = source
    try:
        config = Config.model_validate(_unflatten(merged))
    except ValidationError as exc:

        def describe(loc: tuple[str | int, ...]) -> str:
            dotted = ".".join(str(p) for p in loc if isinstance(p, str))
            return sources.get(dotted, "configuration")

        raise _errors(exc, describe) from None
    for key in KEYS:
        sources.setdefault(key.name, "default")
    return Loaded(config=config, sources=sources, path=path)


def default_database(environ: Mapping[str, str] | None = None) -> Path:
    """Return the default history database: $XDG_STATE_HOME/natt-audit/history.db."""
    env = os.environ if environ is None else environ
    state = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "natt-audit" / "history.db"


def database_path(config: Config, environ: Mapping[str, str] | None = None) -> Path:
    """Return the history database the configuration names, or the default one."""
    return Path(config.database) if config.database else default_database(environ)


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/?#@\s]*)@")
_SECRET_QUERY = re.compile(r"(?i)([?&;](?:[a-z_]*token|password|passwd|secret|key|auth)[a-z_]*=)[^&;#]*")


def redact(text: str) -> str:
    """Return `text` with URL userinfo and secret-looking query parameters replaced by ***."""
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)
    return _SECRET_QUERY.sub(r"\1***", text)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    # JSON string escaping is valid TOML basic-string escaping for every character it emits.
    return json.dumps(str(value), ensure_ascii=True)


def show_config(loaded: Loaded, environ: Mapping[str, str]) -> str:
    """Return the effective configuration as TOML, secrets redacted, each key's source noted."""
    config = loaded.config
    flat = _flatten(config.model_dump(mode="json"))
    flat["exports"] = [redact(dest) for dest in config.exports]
    if config.broker is not None:
        flat["broker"] = redact(config.broker)
    if config.timeouts.deadline is not None:
        flat["timeouts.deadline"] = format_duration(config.timeouts.deadline)
    lines = [
        "# natt-audit effective configuration (defaults < file < NATT_AUDIT_* environment < flags)",
        f"# config file: {loaded.path or 'none'}",
        f"# history database in use: {database_path(config, environ)}",
    ]
    current = ""
    for key in KEYS:
        table, _, name = key.name.rpartition(".")
        if table != current:
            lines.append(f"\n[{table}]")
            current = table
        value = flat.get(key.name)
        source = loaded.sources.get(key.name, "default")
        text = f"# {name} = (not set)" if value is None else f"{name} = {_toml_value(value)}"
        lines.append(f"{text}  # {source}")
    user_env = config.credentials.username_env
    pass_env = config.credentials.password_env
    # The same order the scan takes the account in (scanner/inputs/credentials.py): the
    # `credentials.username` key first, its environment variable only when the key is unset.
    if config.credentials.username is not None:
        who = f"set by credentials.username ({loaded.sources.get('credentials.username', 'default')})"
    else:
        who = f"set in ${user_env}" if environ.get(user_env) else f"not set (credentials.username, ${user_env})"
    lines.append(f"# username: {who}")
    where = "not set"
    if config.credentials.password_file:
        where = "from the password file (content not shown)"
    elif environ.get(pass_env):
        where = f"set in ${pass_env} (redacted)"
    lines.append(f"# password: {where}")
    return "\n".join(lines) + "\n"
