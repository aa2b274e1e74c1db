"""Run the lab: `python -m scanner.lab serve ESTATE.yaml --inventory-out INVENTORY.yaml`."""

from __future__ import annotations

import sys

from scanner.lab.cli import main

sys.exit(main())
