"""`gemba ingest`: the HTTP door for CRM webhooks, on 127.0.0.1."""

from __future__ import annotations

import click

from streams.cli.common import settings_of

__all__ = ["ingest", "register"]


@click.command()
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None,
    help="Port on 127.0.0.1 (default: GEMBA_INGEST_PORT, 6068).",
)  # fmt: skip
@click.pass_context
def ingest(ctx: click.Context, port: int | None) -> None:
    """Receive events over HTTP: POST /events with `Authorization: Bearer $GEMBA_INGEST_TOKEN`.

    The body is one event (JSON object), an array of events, or JSON lines
    (Content-Type application/x-ndjson). A request is published whole or not at all:
    202 when published, 400 for malformed HTTP, 401 without the token, 408 for a body
    slower than GEMBA_INGEST_BODY_TIMEOUT_S, 413 over the size limits, 415 for another
    content type, 422 with each refused event's index, field and reason.
    GET /health answers while it runs. It listens on 127.0.0.1 only: put a TLS proxy
    in front of it for a CRM outside this machine.
    """
    from streams.ingest import run_ingest

    settings = settings_of(ctx)
    run_ingest(settings, port)


def register(cli: click.Group) -> None:
    """Add `gemba ingest` to the command line."""
    cli.add_command(ingest)
