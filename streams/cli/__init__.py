"""The `gemba` command line: one module per command group."""

from streams.cli.main import cli, main

__all__ = ["cli", "main"]
