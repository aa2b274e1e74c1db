"""History: the scan store, drift between scans, the resume journal and the scan lock."""
