"""Deal facts: what a strategy assumption's cohorts may be defined over, one row per deal.

Every fact a claim may name is listed in FIELDS with its kind and meaning; a
deal's facts come from its value stream (under the policy), its opening event
and the campaign responses linked to it (the policy's lookback window before
it opened, up to its close). Durations are in days (in hours where the name
says so), shares in percent. A fact that does not apply to a deal (no held
discovery meeting yet, no segment given, the revenue of an open deal) is None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import TypeAlias

from events.models import CampaignResponded, DealOpened, MeetingKind, MeetingOutcome
from projections.campaigns.journeys import DealFacts
from projections.categories import DealStatus
from projections.deal.value_stream import DealValueStream
from projections.policy.model import Policy

__all__ = [
    "FIELDS",
    "DealProfile",
    "FactField",
    "FactKind",
    "FactValue",
    "attribution_facts",
    "deal_profile",
]

FactValue: TypeAlias = str | float | bool | frozenset[str] | None
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


class FactKind(StrEnum):
    """What kind of value a fact holds; it decides which comparisons a cohort may use."""

    NUMBER = "number"
    TEXT = "text"
    FLAG = "flag"
    SET = "set"


@dataclass(frozen=True, slots=True)
class FactField:
    """One fact a cohort can test: its name, kind and plain-language meaning."""

    name: str
    kind: FactKind
    meaning: str


def _fields(*rows: tuple[str, FactKind, str]) -> Mapping[str, FactField]:
    return MappingProxyType({name: FactField(name, kind, meaning) for name, kind, meaning in rows})


_N, _T, _F, _S = FactKind.NUMBER, FactKind.TEXT, FactKind.FLAG, FactKind.SET
FIELDS: Mapping[str, FactField] = _fields(
    ("deal_id", _T, "the deal's id"),
    ("account_id", _T, "the account the deal is with"),
    ("owner_id", _T, "the rep who owns the deal"),
    ("segment", _T, "customer segment given at opening (e.g. SMB); None if not given"),
    ("industry", _T, "the account's industry given at opening; None if not given"),
    ("product", _T, "the product given at opening; None if not given"),
    ("opened_month", _T, "the UTC month the deal opened in, YYYY-MM"),
    ("opened_stage", _T, "the stage the deal opened in"),
    ("status", _T, "open, won or lost, as of the evaluation time"),
    ("stage", _T, "the stage the deal is in (the policy's won or lost name once closed)"),
    ("furthest_stage", _T, "the furthest open stage the deal reached, in the policy's order"),
    ("closed", _F, "whether the deal is won or lost"),
    ("won", _F, "whether the deal is won"),
    ("opened_amount", _N, "the expected value given at opening; None if not given"),
    ("revenue", _N, "the won amount; 0 for a lost deal; None while open"),
    ("lead_time_days", _N, "days from opening to close (to the evaluation time if open)"),
    ("value_added_hours", _N, "value-added process time, hours"),
    ("waste_hours", _N, "process time that was waste, hours"),
    ("pce", _N, "process cycle efficiency: value-added time / lead time, percent"),
    ("waste_share", _N, "waste time / lead time, percent"),
    ("rework", _N, "rework count: unrequested quote revisions, repeated discovery, regressions"),
    ("regressions", _N, "moves back to an earlier stage"),
    ("stalls", _N, "stall episodes (no value-added touch past the stage's threshold)"),
    ("touches_total", _N, "calls, emails, meetings and quotes, inbound ones included"),
    ("held_meetings", _N, "customer meetings (discovery, demo, negotiation) that were held"),
    ("no_shows", _N, "meetings that were a no-show or rescheduled"),
    ("internal_meetings", _N, "internal meetings (no customer attended)"),
    (
        "first_discovery_days",
        _N,
        "days from opening to the start of the first held discovery meeting; None if none",
    ),
    ("campaign_responses", _N, "campaign responses at the account linked to the deal"),
    ("responded_campaigns", _S, "the campaigns of those responses (test with contains)"),
    ("first_campaign", _T, "the campaign of the earliest linked response; None if none"),
)
"""Every fact a cohort may name, in the order `gemba assumptions fields` lists them."""


@dataclass(frozen=True, slots=True)
class DealProfile:
    """One deal's facts as of an evaluation time, by field name (see FIELDS)."""

    deal_id: str
    facts: Mapping[str, FactValue]


def attribution_facts(stream: DealValueStream, opened: DealOpened) -> DealFacts:
    """What linking campaign responses to the deal needs, taken from its value stream."""
    won = stream.status is DealStatus.WON
    return DealFacts(
        deal_id=stream.deal_id,
        account_id=opened.account_id,
        opened_at=stream.opened_at,
        status=stream.status,
        closed_at=stream.closed_at,
        amount=opened.amount,
        revenue=(stream.amount or Decimal(0)) if won else None,
    )


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _first_discovery_days(stream: DealValueStream) -> float | None:
    held = [
        touch.started_at
        for touch in stream.touches
        if touch.meeting_kind is MeetingKind.DISCOVERY and touch.outcome is MeetingOutcome.HELD
    ]
    return (min(held) - stream.opened_at) / DAY if held else None


def _meetings(stream: DealValueStream) -> dict[str, float]:
    meetings = [touch for touch in stream.touches if touch.kind == "meeting"]
    internal = [touch for touch in meetings if touch.meeting_kind is MeetingKind.INTERNAL]
    held = [touch for touch in meetings if touch.outcome is MeetingOutcome.HELD]
    return {
        "held_meetings": float(
            len([t for t in held if t.meeting_kind is not MeetingKind.INTERNAL])
        ),
        "no_shows": float(len(meetings) - len(held)),
        "internal_meetings": float(len(internal)),
    }


def _furthest_stage(stream: DealValueStream, policy: Policy) -> str:
    ranked = [
        (rank, visit.stage)
        for visit in stream.stage_history
        if (rank := policy.stages.rank(visit.stage)) is not None
    ]
    return max(ranked)[1] if ranked else stream.stage_history[0].stage


def _outcome(stream: DealValueStream) -> dict[str, FactValue]:
    revenue: float | None = None
    if stream.status is DealStatus.WON:
        revenue = _number(stream.amount) or 0.0
    elif stream.status is DealStatus.LOST:
        revenue = 0.0
    return {
        "status": str(stream.status),
        "stage": stream.stage,
        "closed": stream.status is not DealStatus.OPEN,
        "won": stream.status is DealStatus.WON,
        "revenue": revenue,
    }


def _time(stream: DealValueStream) -> dict[str, FactValue]:
    totals = stream.totals
    lead = totals.lead_time
    pce = totals.process_cycle_efficiency
    return {
        "lead_time_days": lead / DAY,
        "value_added_hours": totals.value_added / HOUR,
        "waste_hours": totals.waste.total / HOUR,
        "pce": None if pce is None else pce * 100,
        "waste_share": totals.waste.total / lead * 100 if lead else None,
        "rework": float(totals.rework),
        "regressions": float(sum(visit.regression for visit in stream.stage_history)),
        "stalls": float(len(stream.stalls)),
        "touches_total": float(totals.touches.total),
    }


def deal_profile(
    stream: DealValueStream,
    opened: DealOpened,
    responses: tuple[CampaignResponded, ...],
    policy: Policy,
) -> DealProfile:
    """Every fact of FIELDS for one deal, from its value stream, opening and linked responses."""
    facts: dict[str, FactValue] = {
        "deal_id": stream.deal_id,
        "account_id": opened.account_id,
        "owner_id": stream.owner_id,
        "segment": stream.segment,
        "industry": opened.industry,
        "product": stream.product,
        "opened_month": f"{stream.opened_at:%Y-%m}",
        "opened_stage": opened.stage,
        "furthest_stage": _furthest_stage(stream, policy),
        "opened_amount": _number(opened.amount),
        "first_discovery_days": _first_discovery_days(stream),
        "campaign_responses": float(len(responses)),
        "responded_campaigns": frozenset(response.campaign_id for response in responses),
        "first_campaign": responses[0].campaign_id if responses else None,
        **_outcome(stream),
        **_time(stream),
        **_meetings(stream),
    }
    return DealProfile(stream.deal_id, MappingProxyType({name: facts[name] for name in FIELDS}))
