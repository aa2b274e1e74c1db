"""WinRM/WMI client: hardened HTTP, NTLM + MS-WSMV encryption, safe XML, WMI operations."""

from __future__ import annotations

from scanner.collect.wsman.errors import CollectError, HttpStatusError

__all__ = ["CollectError", "HttpStatusError"]
