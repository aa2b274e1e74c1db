"""Collection: read one host over WinRM/WMI into a frozen Observation (wsman/ is the client)."""
