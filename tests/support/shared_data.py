"""Where the third-party sample data for importer tests lives (it is not in this repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

__all__ = ["maven_crm_pipeline"]

ROOT = Path(__file__).resolve().parents[2]


def _candidates() -> list[Path]:
    given = os.environ.get("GEMBA_SHARED_DATA")
    return [
        *([Path(given)] if given else []),
        ROOT.parent / "shared" / "data",  # beside the checkout, as in the team's workplace
        Path("/work/shared/data"),  # where the workplace keeps it, for a clone elsewhere
    ]


def maven_crm_pipeline() -> Path:
    """`maven_crm/sales_pipeline.csv`; the test is skipped, saying where it looked, if absent."""
    for base in _candidates():
        path = base / "maven_crm" / "sales_pipeline.csv"
        if path.is_file():
            return path
    looked = ", ".join(str(base) for base in _candidates())
    pytest.skip(f"maven_crm sample data not found (set GEMBA_SHARED_DATA; looked in {looked})")
