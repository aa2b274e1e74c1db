"""Delivery of findings to SIEMs: destinations, spool, syslog and HEC transports, `ship`."""

from __future__ import annotations
