"""Text inventories: one host, host:port, [IPv6]:port, IPv6 or CIDR range per line (docs/inventory.md "Text").

CIDR ranges are expanded arithmetically with `ipaddress`; nothing is resolved or contacted.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from scanner.core.wording import count
from scanner.inputs.inventory.validate import (
    PORT,
    URL_SCHEME,
    Entry,
    Problems,
    fixed,
    parse_port,
    show,
    text_problem,
)

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_CIDR_ADDRESSES = 65536  # /16 for IPv4, /112 for IPv6: bigger ranges are almost always a typo
_BRACKETED = re.compile(r"\[([^\[\]]*)\](?::(.*))?", re.DOTALL)


def host_count(network: _Network) -> int:
    """Return how many addresses `network.hosts()` yields, by arithmetic (nothing is generated)."""
    # IPv4: network and broadcast excluded below /31 (RFC 3021); IPv6: the subnet-router anycast
    # address (all-zero host part) excluded below /127 (RFC 4291 section 2.6.1).
    if network.num_addresses <= 2:
        return network.num_addresses
    return network.num_addresses - (2 if network.version == 4 else 1)


def _expand(
    network: _Network,
    spec: str,
    port: str | None,
    source: str,
    warnings: list[str],
) -> Iterator[Entry]:
    # IPv4: network and broadcast excluded below /31 (RFC 3021); IPv6: the subnet-router anycast
    # address (all-zero host part) excluded below /127 (RFC 4291 section 2.6.1). Arithmetic only.
    warnings.append(f"{source}: {spec} expanded to {count(host_count(network), 'address', 'addresses')}")
    for ip in network.hosts():  # a generator: one address at a time
        yield Entry(source=source, where=fixed(source), name=str(ip), port=port, ip=True, named_by_address=True)


def _network(text: str, where: str, problems: Problems) -> _Network | None:
    base, _, prefix = text.partition("/")
    try:
        ipaddress.ip_address(base)
    except ValueError:
        problems.add(where, f"{show(text)} contains a path separator; give a host, IP address or CIDR range")
        return None
    if not PORT.fullmatch(prefix) and prefix != "0":
        problems.add(where, f"CIDR range {show(text)} needs a numeric prefix length")
        return None
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        problems.add(where, f"CIDR range {show(text)} is invalid: {exc}")
        return None
    if network.num_addresses > MAX_CIDR_ADDRESSES:
        problems.add(
            where,
            f"CIDR range {show(text)} has {network.num_addresses} addresses; the limit is "
            f"{MAX_CIDR_ADDRESSES} (/16 for IPv4, /112 for IPv6): split it into smaller ranges",
        )
        return None
    return network


def _split(token: str, source: str, problems: Problems) -> tuple[str, str | None] | None:
    """Return (host, port) of one non-comment text line, or None after recording its problem."""
    if text_problem(token):
        problems.add(source, f"entry {show(token)} contains control or invisible characters")
        return None
    for marker, why in (
        (any(c.isspace() for c in token), "contains whitespace (one host per line)"),
        ("," in token, "contains a comma (one host per line)"),
        ("://" in token or bool(URL_SCHEME.match(token)), "has a URL scheme; give host or host:port only"),
        ("@" in token, "contains '@' (user info); credentials never go in the inventory"),
    ):
        if marker:
            problems.add(source, f"entry {show(token)} {why}")
            return None
    host: str
    port: str | None = None
    if token.startswith("["):
        match = _BRACKETED.fullmatch(token)
        if not match:
            problems.add(source, f"entry {show(token)} is not [IPv6-address] or [IPv6-address]:port")
            return None
        host, port = match.group(1), match.group(2)
        if ":" not in host:
            problems.add(source, f"entry {show(token)}: brackets are only for IPv6 addresses")
            return None
    elif token.count(":") >= 2:
        host = token  # a bare IPv6 literal: no port, write [address]:port for one
    else:
        host, sep, rest = token.partition(":")
        port = rest if sep else None
    if port is not None and parse_port(port) is None:
        problems.add(source, f"port {show(port)} must be an integer 1..65535")
        return None
    return host, port


def _is_range(host: str) -> bool:
    return "/" in host and not host.startswith("/")


def _text_line(token: str, source: str, problems: Problems, warnings: list[str]) -> Iterator[Entry]:
    """Turn one non-comment text line into entries: host, host:port, [v6]:port, v6, CIDR."""
    split = _split(token, source, problems)
    if split is None:
        return
    host, port = split
    if _is_range(host):
        network = _network(host, source, problems)
        if network is not None:
            yield from _expand(network, host, port, source, warnings)
        return
    yield Entry(source=source, where=fixed(source), name=host, port=port, named_by_address=True)


def _tokens(text: str, path: str) -> Iterator[tuple[str, str]]:
    """Yield (file:line, token) for every line that is not blank or a comment."""
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        token = line.split("#", 1)[0].strip()
        if token:
            yield f"{path}:{number}", token


def _over_limit(text: str, path: str, max_hosts: int) -> tuple[str, int] | None:
    """Return (file:line, total so far) where the hosts first exceed `max_hosts`, counting ranges by arithmetic.

    Sixteen /16 lines would otherwise generate a million addresses (minutes and gigabytes)
    before the limit is noticed. Problems are not recorded here: the real pass reports them.
    """
    total = 0
    scratch = Problems()
    for source, token in _tokens(text, path):
        count = 1
        if "/" in token:
            split = _split(token, source, scratch)
            if split is not None and _is_range(split[0]):
                network = _network(split[0], source, scratch)
                count = host_count(network) if network is not None else 0
        total += count
        if total > max_hosts:
            return source, total
    return None


def text_entries(
    text: str, path: str, problems: Problems, warnings: list[str], max_hosts: int
) -> Iterator[Entry]:
    over = _over_limit(text, path, max_hosts)
    if over is not None:
        source, total = over
        problems.add(
            source,
            f"more than {max_hosts} hosts (at least {total} with the ranges up to this line); "
            f"the limit is {max_hosts}",
        )
        return
    for source, token in _tokens(text, path):
        yield from _text_line(token, source, problems, warnings)
