"""Inputs of a scan: inventory sources, credentials and configuration, validated before any host is contacted."""
