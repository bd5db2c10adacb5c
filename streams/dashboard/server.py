"""The dashboard's aiohttp application: routes, guards, and what runs beside it."""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import structlog
from aiohttp import web

from projections.archive.dashboard import DashboardQueryError, archive_position
from streams.dashboard.archive import ArchiveReader
from streams.dashboard.derived import (
    DerivedView,
    assumption_documents,
    campaign_documents,
    run_in_child,
)
from streams.dashboard.handlers import (
    DERIVED,
    FEED,
    OPTIONS,
    READER,
    DashboardOptions,
    DerivedViews,
    reply,
    routes,
)
from streams.dashboard.live import AlertFeed
from streams.errors import GembaError
from streams.host_check import host_guard
from streams.settings import Settings

__all__ = ["HOST", "create_dashboard", "run_dashboard"]

log = structlog.get_logger(__name__)
HOST = "127.0.0.1"
CONTENT_SECURITY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
"""Everything the page loads comes from this server: no CDN, nothing from another host."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as JSON with a message to act on: bad input 400, archive unreadable 503."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except DashboardQueryError as exc:
        return reply({"error": str(exc)}, 400)
    except GembaError as exc:
        return reply({"error": str(exc)}, 503)
    except Exception:
        log.exception("dashboard_request_failed", path=request.path)
        return reply({"error": "the dashboard failed to answer; see its log"}, 500)


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-cache")


async def _warm_up(app: web.Application) -> None:
    """Compute the derived views once at start, so their pages are ready when opened."""
    try:
        position = await app[READER].ask(archive_position)
    except GembaError as exc:
        log.warning("dashboard_archive_unreadable", error=str(exc))
        return
    derived = app[DERIVED]
    derived.campaigns.refresh(position)
    if derived.assumptions is not None:
        derived.assumptions.refresh(position)


async def _background(app: web.Application) -> AsyncIterator[None]:
    feed = asyncio.create_task(app[FEED].run(), name="dashboard-alerts")
    warm = asyncio.create_task(_warm_up(app), name="dashboard-warm-up")
    yield
    for task in (warm, feed):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    derived = app[DERIVED]
    await derived.campaigns.stop()
    if derived.assumptions is not None:
        await derived.assumptions.stop()


async def _end_streams(app: web.Application) -> None:
    app[FEED].close()


def _derived_views(settings: Settings, options: DashboardOptions) -> DerivedViews:
    turns = asyncio.Semaphore(1)
    every = options.recompute_interval_s
    campaigns = DerivedView(
        "campaigns",
        partial(run_in_child, campaign_documents, settings, options.policy),
        turns,
        every,
    )
    assumptions = None
    if options.assumptions_file is not None:
        compute = partial(
            run_in_child,
            assumption_documents,
            settings,
            options.policy,
            options.assumptions_file,
            options.code_version,
        )
        assumptions = DerivedView("assumptions", compute, turns, every)
    return DerivedViews(campaigns, assumptions)


def create_dashboard(settings: Settings, options: DashboardOptions) -> web.Application:
    """The dashboard app: the archive read per request, the alerts topic followed beside it."""
    guard = host_guard(lambda: settings.allowed_host_names, "the dashboard")
    app = web.Application(middlewares=[guard, _errors])
    app[OPTIONS] = options
    app[READER] = ArchiveReader(settings)
    app[FEED] = AlertFeed(settings)
    app[DERIVED] = _derived_views(settings, options)
    app.add_routes(routes())
    app.on_response_prepare.append(_headers)
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_end_streams)
    return app


def run_dashboard(
    settings: Settings, options: DashboardOptions, ready: Callable[[str], None]
) -> None:
    """Serve on 127.0.0.1 until interrupted; `ready(url)` once it listens."""
    url = f"http://{HOST}:{options.port}/"
    try:
        web.run_app(
            create_dashboard(settings, options),
            host=HOST,
            port=options.port,
            print=lambda _message: ready(url),
            access_log=None,
            shutdown_timeout=2.0,
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise GembaError(
                f"port {options.port} on {HOST} is in use: stop what uses it, or choose "
                "another with --port"
            ) from None
        raise
