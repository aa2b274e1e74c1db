"""Build pywinrm's `Protocol` for one host with our transport plugged in."""

from __future__ import annotations

from winrm.protocol import Protocol

from scanner.collect.wsman.transport import WsmanTransport
from scanner.core.models import CollectOptions, Target


def new_protocol(target: Target, options: CollectOptions, transport: WsmanTransport) -> Protocol:
    """Return a Protocol (one per host, never shared between threads) that sends through `transport`."""
    operation = max(1, min(options.operation_timeout, int(options.host_timeout)))
    protocol = Protocol(
        target.endpoint,
        transport="plaintext",
        # pywinrm's own transport is replaced below and never sends anything; it insists on a
        # username/password, so it gets placeholders, never the real credentials.
        username="natt-audit",
        password="",
        operation_timeout_sec=operation,
        read_timeout_sec=operation + 1,
        proxy=None,
    )
    # Duck-typed replacement: pywinrm only calls transport.send_message(message).
    protocol.transport = transport  # type: ignore[assignment]
    return protocol
