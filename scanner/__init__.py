"""natt-audit: audit the Windows IPsec NAT-T setting across an estate over WinRM/WMI."""

from __future__ import annotations

__version__ = "0.1.0"
