"""The DuckDB connection every archive function takes, under one name callers may import."""

from __future__ import annotations

from typing import TypeAlias

import duckdb

__all__ = ["Connection"]

Connection: TypeAlias = duckdb.DuckDBPyConnection
"""An open connection to the archive file (from `open_reader` or `open_archive`)."""
