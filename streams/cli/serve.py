"""`gemba serve`: the value-stream dashboard in a browser, from the archive and live alerts."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import click

from streams.cli.common import command_policy, settings_of
from streams.settings import PROJECT_ROOT

__all__ = ["DEFAULT_PORT", "register", "serve"]

DEFAULT_PORT = 6070
EXAMPLE_ASSUMPTIONS = PROJECT_ROOT / "docs" / "assumptions.example.toml"


@click.command()
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None,
    help=f"Port on 127.0.0.1 (default: GEMBA_DASHBOARD_PORT, else {DEFAULT_PORT}).",
)  # fmt: skip
@click.option(
    "--assumptions", "assumptions_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
    help="Assumptions file for the Assumptions view (default: docs/assumptions.example.toml "
    "when present).",
)  # fmt: skip
@click.option(
    "--open-browser/--no-open-browser", default=False, show_default=True,
    help="Open the dashboard in the default browser once it listens.",
)  # fmt: skip
@click.pass_context
def serve(
    ctx: click.Context, port: int | None, assumptions_file: Path | None, open_browser: bool
) -> None:
    """Serve the value-stream dashboard on 127.0.0.1 until Ctrl-C.

    Views: value-stream map (filter by month, segment, rep, product, campaign),
    deal timeline, waste Pareto, cumulative flow, stalled deals (live from the
    alerts topic), campaign flow and attribution, strategy assumptions. Reads the
    history archive read-only (GEMBA_DUCKDB_PATH), opening it for each request;
    everything the page needs is served from here, so it works offline.
    """
    from streams.cli.assumptions import code_version
    from streams.dashboard.handlers import DashboardOptions
    from streams.dashboard.server import run_dashboard

    settings = settings_of(ctx)
    if assumptions_file is None and EXAMPLE_ASSUMPTIONS.is_file():
        assumptions_file = EXAMPLE_ASSUMPTIONS
    options = DashboardOptions(
        port=port or settings.dashboard_port,
        policy=command_policy(settings),
        assumptions_file=assumptions_file,
        code_version=code_version(),
    )

    def ready(url: str) -> None:
        click.echo(
            f"Gemba dashboard at {url} (archive {settings.history_db_path}, alerts from "
            f"{settings.alerts_topic} at {settings.bootstrap_servers}); Ctrl-C stops it",
            err=True,
        )
        if open_browser:
            webbrowser.open(url)

    run_dashboard(settings, options, ready)


def register(cli: click.Group) -> None:
    """Add `gemba serve` to the command line."""
    cli.add_command(serve)
