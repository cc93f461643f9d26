"""Registry tables for distributed QC review and data releases (filled in by the QC/release work)."""

from __future__ import annotations
