"""What the command modules share: the global options, config-key options, value types.

Options that set a configuration key are added with `config_option(parser, ..., key=...)`: the
value reaches the configuration by its key name (`config_flags`), never by an argparse
destination, so renaming or adding an option cannot silently drop it from the layering
(defaults < file < environment < flags, docs/config.md).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, TypeAlias

from scanner.core.models import DEFAULT_CONCURRENCY
from scanner.inputs.config import KEY_NAMES, parse_duration

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers: TypeAlias = Any

_CONFIG_DEST = "config:"  # not a valid identifier: no other option can collide with it


def config_option(parser: argparse.ArgumentParser, *names: str, key: str, **kwargs: Any) -> argparse.Action:
    """Add an option whose value, when given, sets the configuration key `key`."""
    if key not in KEY_NAMES:
        raise ValueError(f"{key!r} is not a configuration key (scanner/inputs/config.py KEYS)")
    if "dest" in kwargs:
        raise TypeError("a config option's destination is its key; do not name one")
    if "action" not in kwargs and "choices" not in kwargs:
        kwargs.setdefault("metavar", names[-1].lstrip("-").upper().replace("-", "_"))
    kwargs.setdefault("default", None)
    return parser.add_argument(*names, dest=_CONFIG_DEST + key, **kwargs)


def config_flags(args: argparse.Namespace) -> dict[str, object]:
    """Return the values of the config options as {configuration key: value} (None: not given)."""
    return {
        name.removeprefix(_CONFIG_DEST): value for name, value in vars(args).items() if name.startswith(_CONFIG_DEST)
    }


def flag(args: argparse.Namespace, key: str) -> object:
    """Return the value given for configuration key `key` on the command line, or None."""
    return getattr(args, _CONFIG_DEST + key, None)


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """Add -v/--verbose and --log-format; every parser of the tree has them, before or after the command."""
    # Their default is SUPPRESS, so a sub-command's parser never overwrites what was given before
    # the command name; the top-level parser's `set_defaults` supplies the real defaults.
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug detail to stderr"
    )
    config_option(
        parser,
        "--log-format",
        key="log_format",
        choices=["plain", "json"],
        default=argparse.SUPPRESS,
        help="stderr log format (default plain, or $NATT_AUDIT_LOG_FORMAT, or the config file's)",
    )


def global_defaults() -> dict[str, object]:
    """Return the defaults of the global options, for the top-level parser's set_defaults."""
    return {"verbose": False, _CONFIG_DEST + "log_format": None}


def positive_int(text: str) -> int:
    """Parse an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def positive_float(text: str) -> float:
    """Parse a number greater than 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def nonnegative_float(text: str) -> float:
    """Parse a number of 0 or more."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def fraction(text: str) -> float:
    """Parse a number from 0 to 1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def duration(text: str) -> float:
    """Parse a duration (90s, 45m, 2h, 1h30m or seconds)."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_db_options(parser: argparse.ArgumentParser) -> None:
    """Add --db and --config, as the history commands take them."""
    config_option(
        parser, "--db", key="database", metavar="PATH", help="history database (default: config, then XDG state)"
    )
    parser.add_argument("--config", metavar="FILE", help="TOML config file (default $NATT_AUDIT_CONFIG)")


def add_host_limits(parser: argparse.ArgumentParser, *, host_timeout_help: str) -> None:
    """Add --concurrency, --host-timeout and --connect-timeout (scan and remediate --apply)."""
    config_option(
        parser,
        "--concurrency",
        key="concurrency",
        type=positive_int,
        help=f"hosts in flight (default {DEFAULT_CONCURRENCY})",
    )
    config_option(parser, "--host-timeout", key="timeouts.host", type=positive_float, help=host_timeout_help)
    config_option(
        parser, "--connect-timeout", key="timeouts.connect", type=positive_float, help="TCP connect timeout (default 5)"
    )


def add_tls_options(parser: argparse.ArgumentParser) -> None:
    """Add --ca-bundle, --insecure-skip-tls-verify and --tls-min-version (scan and remediate --apply)."""
    config_option(parser, "--ca-bundle", key="ca_bundle", help="PEM file of CA certificates for HTTPS hosts")
    config_option(
        parser,
        "--insecure-skip-tls-verify",
        key="insecure_skip_tls_verify",
        action="store_const",
        const=True,
        help="do NOT verify HTTPS certificates (logged as a warning on every run)",
    )
    config_option(
        parser,
        "--tls-min-version",
        key="tls_min_version",
        choices=["1.0", "1.1", "1.2"],
        help="lowest TLS version for HTTPS hosts (default 1.2; 1.0 for Server 2003 listeners, warned on every run)",
    )
