"""The event log as known at a time, turned into one fact profile per deal.

The as-of rule is replay's (and campaign_history's): an (event, recorded_at)
pair counts when the event occurred, and was recorded, by `as_of`; without
`as_of`, every pair counts. The log's position is stated so that a verdict can
be reproduced: pairs read, pairs known, distinct events known and a sha256
over their sorted ids. (The contents behind the ids are guarded by the
archive's hash chain: `gemba audit verify`.)
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime

from events.models import CampaignResponded, DealOpened, EventBase
from projections.assumptions.facts import DealProfile, attribution_facts, deal_profile
from projections.campaigns.journeys import link_responses
from projections.categories import DealStatus
from projections.deal.event_set import canonical_events, known_at
from projections.deal.value_stream import DealValueStream, deal_value_stream
from projections.errors import DealNotOpened, ProjectionError
from projections.policy.model import Policy

__all__ = ["FoldCache", "KnownLog", "LogPosition", "deal_profiles", "known_log", "month_ends"]

FoldCache = MutableMapping[tuple[EventBase, ...], tuple[DealValueStream, DealOpened]]
"""Closed deals' value streams by their exact events: they do not change with the as-of time."""


@dataclass(frozen=True, slots=True)
class LogPosition:
    """Where in the event log an evaluation stood: enough to check it saw the same events."""

    events_read: int
    events_known: int
    distinct_events: int
    event_ids_sha256: str
    latest_event_at: datetime | None


@dataclass(frozen=True, slots=True)
class KnownLog:
    """The events known at a time: each deal's events, the campaign responses, the position."""

    as_of: datetime | None
    deals: dict[str, list[EventBase]]
    responses: list[CampaignResponded]
    position: LogPosition

    @property
    def watermark(self) -> datetime | None:
        """The time open deals are measured up to: as-of, else the latest known event time."""
        return self.as_of or self.position.latest_event_at


def known_log(
    records: Iterable[tuple[EventBase, datetime]], as_of: datetime | None = None
) -> KnownLog:
    """Sort the (event, recorded_at) pairs known at `as_of` into deals and responses."""
    if as_of is not None and as_of.utcoffset() is None:
        raise ProjectionError("as_of must be timezone-aware, like event times")
    deals: defaultdict[str, list[EventBase]] = defaultdict(list)
    responses: list[CampaignResponded] = []
    ids: set[str] = set()
    read = known = 0
    latest: datetime | None = None
    for event, recorded_at in records:
        read += 1
        if not known_at(event, recorded_at, as_of):
            continue
        known += 1
        ids.add(event.event_id)
        latest = event.occurred_at if latest is None else max(latest, event.occurred_at)
        if isinstance(event, CampaignResponded):
            responses.append(event)
        elif event.deal_id is not None:
            deals[event.deal_id].append(event)
    digest = hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()
    position = LogPosition(read, known, len(ids), digest, latest)
    return KnownLog(as_of, dict(deals), responses, position)


def _fold(
    events: list[EventBase], policy: Policy, watermark: datetime, cache: FoldCache | None
) -> tuple[DealValueStream, DealOpened] | None:
    facts = canonical_events(events)
    if cache is not None and (held := cache.get(facts)) is not None:
        return held
    opened = next((event for event in facts if isinstance(event, DealOpened)), None)
    if opened is None:
        return None  # not opened as of then: no deal yet
    try:
        stream = deal_value_stream(facts, policy, watermark)
    except DealNotOpened:
        return None
    if cache is not None and stream.status is not DealStatus.OPEN:
        cache[facts] = (stream, opened)
    return stream, opened


def deal_profiles(
    log: KnownLog, policy: Policy, cache: FoldCache | None = None
) -> tuple[DealProfile, ...]:
    """Every opened deal's facts as known in `log`, sorted by deal id.

    Open deals are measured up to the log's watermark. `cache` (kept between
    calls over the same records) saves folding a closed deal again.
    """
    watermark = log.watermark
    if watermark is None:
        return ()
    folded = {
        deal_id: found
        for deal_id in sorted(log.deals)
        if (found := _fold(log.deals[deal_id], policy, watermark, cache)) is not None
    }
    journeys = link_responses(
        [attribution_facts(stream, opened) for stream, opened in folded.values()],
        log.responses,
        policy.attribution.lookback,
    )
    return tuple(
        deal_profile(*folded[journey.deal.deal_id], journey.responses, policy)
        for journey in journeys
    )


def month_ends(start: datetime, end: datetime) -> list[datetime]:
    """The first instant (UTC) of every month after `start`'s month, strictly before `end`."""
    year, month = start.astimezone(UTC).year, start.astimezone(UTC).month
    moments: list[datetime] = []
    while True:
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        moment = datetime(year, month, 1, tzinfo=UTC)
        if moment >= end:
            return moments
        moments.append(moment)
