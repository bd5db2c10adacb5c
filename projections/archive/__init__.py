"""The history archive in DuckDB: the only package of the core that imports duckdb."""
