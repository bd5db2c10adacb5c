"""The dashboard's HTTP handlers: read the request, ask the archive or a cached view, answer JSON.

Each handler is thin: parameters become typed values (projections.archive.dashboard
binds them into SQL), the question runs off the event loop, and the answer is
one JSON document stamped with the archive's event time and policy versions.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from aiohttp import web

from projections.archive import dashboard as queries
from projections.deal.alerts import StallAlert
from projections.policy.model import Policy
from streams.dashboard.archive import ArchiveReader
from streams.dashboard.derived import DerivedView
from streams.dashboard.documents import (
    alert_card,
    json_bytes,
    map_document,
    stalled_card,
    stamp_document,
    timeline_document,
)
from streams.dashboard.live import AlertFeed, FeedItem
from streams.reports.campaigns import MODELS

__all__ = [
    "DERIVED",
    "FEED",
    "OPTIONS",
    "READER",
    "STATIC_DIR",
    "DashboardOptions",
    "DerivedViews",
    "routes",
]

STATIC_DIR = Path(__file__).resolve().parent / "static"
HEARTBEAT_S = 15.0
"""A comment line on idle event streams, so proxies and browsers keep them open."""


@dataclass(frozen=True)
class DashboardOptions:
    """How `gemba serve` runs: port, policy, assumptions file, and how often to recompute."""

    port: int
    policy: Policy
    assumptions_file: Path | None
    code_version: str = "unknown"
    recompute_interval_s: float = 60.0


@dataclass(frozen=True)
class DerivedViews:
    """The views computed from the whole log, each cached per archive position."""

    campaigns: DerivedView
    assumptions: DerivedView | None


OPTIONS = web.AppKey("options", DashboardOptions)
READER = web.AppKey("reader", ArchiveReader)
FEED = web.AppKey("feed", AlertFeed)
DERIVED = web.AppKey("derived", DerivedViews)


def reply(document: Any, status: int = 200) -> web.Response:
    """A JSON response."""
    return web.Response(body=json_bytes(document), status=status, content_type="application/json")


def _param(request: web.Request, name: str) -> str | None:
    value = request.query.get(name, "").strip()
    return value or None


def _filters(request: web.Request) -> queries.Filters:
    return queries.Filters(
        month=_param(request, "month"),
        segment=_param(request, "segment"),
        owner=_param(request, "owner"),
        product=_param(request, "product"),
    )


async def _position(request: web.Request) -> tuple[Any, queries.ArchiveStamp]:
    return await request.app[READER].ask(
        lambda c: (queries.archive_position(c), queries.archive_stamp(c)), key="position"
    )


def _computing(view: DerivedView, what: str) -> web.Response:
    status = "failed" if view.error and not view.computing else "computing"
    return reply({"status": status, "view": view.name, "what": what, "error": view.error}, 202)


# --- pages -----------------------------------------------------------------------------------


async def index(request: web.Request) -> web.FileResponse:
    """The one page; each view is drawn by the browser from /api/."""
    return web.FileResponse(STATIC_DIR / "index.html")


async def health(request: web.Request) -> web.Response:
    """Whether the archive can be read, how the alerts feed stands, and the derived views."""
    derived = request.app[DERIVED]
    views = [derived.campaigns] + ([derived.assumptions] if derived.assumptions else [])
    return reply(
        {
            "archive": request.app[READER].path,
            "alerts": request.app[FEED].status(),
            "views": {
                view.name: {
                    "computing": view.computing,
                    "ready": view.latest is not None,
                    "seconds": None if view.latest is None else view.latest.seconds,
                    "error": view.error,
                }
                for view in views
            },
        }
    )


async def filter_choices(request: web.Request) -> web.Response:
    """The values each filter can take, and the archive's stamp."""
    options, stamp = await request.app[READER].ask(
        lambda c: (queries.filter_options(c), queries.archive_stamp(c)), key="filters"
    )
    return reply({"stamp": stamp_document(stamp)} | asdict(options))


async def _with_campaign(
    request: web.Request, filters: queries.Filters
) -> queries.Filters | web.Response:
    """The filters narrowed to the deals linked to ?campaign= (from the campaign view)."""
    campaign = _param(request, "campaign")
    if campaign is None:
        return filters
    view = request.app[DERIVED].campaigns
    position, _ = await _position(request)
    view.refresh(position)
    if view.latest is None:
        return _computing(view, "linking campaign responses to deals")
    linked = view.latest.document["deals_by_campaign"].get(campaign, [])
    return replace(filters, deal_ids=frozenset(linked))


async def value_stream(request: web.Request) -> web.Response:
    """The value-stream map under the filters (?month, segment, owner, product, campaign)."""
    filters = await _with_campaign(request, _filters(request))
    if isinstance(filters, web.Response):
        return filters
    chart, stamp = await request.app[READER].ask(
        lambda c: (queries.value_stream_map(c, filters), queries.archive_stamp(c)),
        key=("value-stream", filters),
    )
    document = map_document(chart, _param(request, "campaign"))
    return reply({"stamp": stamp_document(stamp)} | document)


async def find_deals(request: web.Request) -> web.Response:
    """Deals whose id contains ?q=."""
    text = request.query.get("q", "")
    found = await request.app[READER].ask(
        lambda c: queries.find_deals(c, text), key=("find-deals", text)
    )
    return reply({"deals": found})


async def deal(request: web.Request) -> web.Response:
    """One deal's timeline."""
    deal_id = request.match_info["deal_id"]
    timeline, stamp = await request.app[READER].ask(
        lambda c: (queries.deal_timeline(c, deal_id), queries.archive_stamp(c)),
        key=("deal", deal_id),
    )
    if timeline is None:
        return reply({"error": f"the archive holds no value stream for deal {deal_id!r}"}, 404)
    return reply({"stamp": stamp_document(stamp)} | timeline_document(timeline))


async def waste(request: web.Request) -> web.Response:
    """The waste Pareto under the filters."""
    filters = await _with_campaign(request, _filters(request))
    if isinstance(filters, web.Response):
        return filters
    lines, stamp = await request.app[READER].ask(
        lambda c: (queries.waste_pareto(c, filters), queries.archive_stamp(c)),
        key=("waste", filters),
    )
    return reply({"stamp": stamp_document(stamp), "lines": [asdict(line) for line in lines]})


async def waste_deals(request: web.Request) -> web.Response:
    """The deals that lost most to one waste category (?limit, default 50)."""
    category = request.match_info["category"]
    filters = await _with_campaign(request, _filters(request))
    if isinstance(filters, web.Response):
        return filters
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        raise queries.DashboardQueryError("limit must be a whole number") from None
    total, deals = await request.app[READER].ask(
        lambda c: queries.waste_deals(c, category, filters, limit),
        key=("waste-deals", category, filters, limit),
    )
    return reply({"category": category, "total": total, "deals": [asdict(d) for d in deals]})


async def waste_details(request: web.Request) -> web.Response:
    """The evidence of one deal's waste in one category (touches, or stall episodes)."""
    category, deal_id = request.match_info["category"], request.match_info["deal_id"]
    rows = await request.app[READER].ask(
        lambda c: queries.waste_details(c, category, deal_id),
        key=("waste-details", category, deal_id),
    )
    return reply({"category": category, "deal_id": deal_id, "rows": rows})


async def flow(request: web.Request) -> web.Response:
    """The cumulative flow diagram and throughput, WIP and lead time by month."""
    chart, stamp = await request.app[READER].ask(
        lambda c: (queries.flow_over_time(c), queries.archive_stamp(c)), key="flow"
    )
    return reply({"stamp": stamp_document(stamp)} | asdict(chart))


async def stalled(request: web.Request) -> web.Response:
    """Stalled deals: open episodes from archived alerts, else from the value streams; then the
    alerts received live since the server started (apply in order), and the feed's state."""

    def question(connection: Any) -> tuple[Any, ...]:
        return (
            queries.stalled_deals(connection),
            queries.open_stall_alerts(connection),
            queries.archive_stamp(connection),
        )

    deals, alerts, stamp = await request.app[READER].ask(question, key="stalled")
    cards = {deal.deal_id: stalled_card(deal, stamp.policy_versions) for deal in deals}
    for payload in alerts:
        with contextlib.suppress(ValueError):
            alert = StallAlert.model_validate_json(payload)
            cards[alert.deal_id] = alert_card(alert, "archived alert")
    feed = request.app[FEED]
    return reply(
        {
            "stamp": stamp_document(stamp),
            "stages": list(request.app[OPTIONS].policy.stages.order),
            "cards": list(cards.values()),
            "live": [item.data | {"seq": item.seq} for item in feed.since(0)],
            "feed": feed.status(),
        }
    )


async def alert_stream(request: web.Request) -> web.StreamResponse:
    """New alerts as Server-Sent Events (after ?after= or Last-Event-ID), and feed status."""
    feed = request.app[FEED]
    try:
        after = int(request.headers.get("Last-Event-ID") or request.query.get("after") or 0)
    except ValueError:
        after = 0
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    queue = feed.subscribe()
    try:
        await response.write(b"retry: 2000\n\n" + FeedItem("status", feed.status()).sse())
        for item in feed.since(after):
            await response.write(item.sse())
            after = item.seq or after
        while True:
            try:
                next_item = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
            except TimeoutError:
                await response.write(b": still here\n\n")
                continue
            if next_item is None:
                break
            if next_item.seq is None or next_item.seq > after:
                await response.write(next_item.sse())
    except ConnectionResetError:
        pass
    finally:
        feed.unsubscribe(queue)
    return response


async def campaigns(request: web.Request) -> web.Response:
    """The campaign table under ?model= (default linear) and the Sankey links."""
    model = request.query.get("model", "linear")
    if model not in MODELS:
        raise queries.DashboardQueryError(f"no model {model!r}; choose one of {', '.join(MODELS)}")
    view = request.app[DERIVED].campaigns
    position, stamp = await _position(request)
    view.refresh(position)
    if view.latest is None:
        return _computing(view, "crediting revenue to campaigns")
    document = view.latest.document
    return reply(
        {
            "status": view.state(position),
            "computed_seconds": view.latest.seconds,
            "stamp": stamp_document(stamp),
            "model": model,
            "models": list(MODELS),
            "rows": document["models"][model],
            "flow": document["flow"],
            "stage_order": document["stage_order"],
            "deals": document["deals"],
            "responses": document["responses"],
            "policy_version": document["policy_version"],
            "unattributed_revenue": document["unattributed_revenue"],
            "not_opened": document["not_opened"],
        }
    )


async def assumptions(request: web.Request) -> web.Response:
    """Each claim's verdict, effect and interval, and its trend at each month end."""
    view = request.app[DERIVED].assumptions
    if view is None:
        return reply(
            {
                "status": "none",
                "message": "no assumptions file: start the dashboard with "
                "`gemba serve --assumptions FILE` (see docs/assumptions.example.toml)",
            }
        )
    position, stamp = await _position(request)
    view.refresh(position)
    if view.latest is None:
        return _computing(view, "checking the assumptions at every month end")
    return reply(
        {
            "status": view.state(position),
            "computed_seconds": view.latest.seconds,
            "stamp": stamp_document(stamp),
        }
        | view.latest.document
    )


def routes() -> list[web.AbstractRouteDef]:
    """Every route of the dashboard."""
    return [
        web.get("/", index),
        web.get("/api/health", health),
        web.get("/api/filters", filter_choices),
        web.get("/api/value-stream", value_stream),
        web.get("/api/deals", find_deals),
        web.get("/api/deals/{deal_id}", deal),
        web.get("/api/waste", waste),
        web.get("/api/waste/{category}/deals", waste_deals),
        web.get("/api/waste/{category}/deals/{deal_id}", waste_details),
        web.get("/api/flow", flow),
        web.get("/api/stalled", stalled),
        web.get("/api/alerts/stream", alert_stream),
        web.get("/api/campaigns", campaigns),
        web.get("/api/assumptions", assumptions),
        web.static("/static", STATIC_DIR),
    ]
