"""Campaign journeys: what a deal needs for attribution, and the responses linked to it."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from events.models import CampaignResponded, DealLost, DealOpened, DealWon, EventBase, StageChanged
from projections.categories import DealStatus
from projections.deal.event_set import canonical_events
from projections.deal.stages import stage_history
from projections.errors import AttributionError, DealNotOpened, NotOneDeal
from projections.intervals import Span, utc
from projections.policy.model import Policy

__all__ = ["DealFacts", "Journey", "deal_facts_from_events", "link_responses"]


@dataclass(frozen=True, slots=True)
class DealFacts:
    """What attribution needs to know of a deal: its account, milestones, outcome and value.

    `qualified_at` is when the deal first reached the opportunity stage (or a
    later one); `amount` is the expected value (pipeline) and `revenue` the won
    amount, set only for a won deal. `opened_stage` is the stage it opened in
    and `furthest_stage` the furthest open stage it reached, by policy order.
    """

    deal_id: str
    account_id: str
    opened_at: datetime
    status: DealStatus = DealStatus.OPEN
    closed_at: datetime | None = None
    qualified_at: datetime | None = None
    amount: Decimal | None = None
    revenue: Decimal | None = None
    opened_stage: str = "Prospecting"
    furthest_stage: str = "Prospecting"
    segment: str | None = None
    owner_id: str | None = None
    product: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", DealStatus(self.status))
        if any(t is not None and t.utcoffset() is None for t in self._moments()):
            raise AttributionError(f"deal {self.deal_id}: times must be timezone-aware")
        if (self.closed_at is None) != (self.status is DealStatus.OPEN):
            raise AttributionError(
                f"deal {self.deal_id}: give closed_at exactly when the deal is won or lost"
            )
        if self.closed_at is not None and self.closed_at < self.opened_at:
            raise AttributionError(f"deal {self.deal_id}: closed_at is before opened_at")
        if (self.revenue is not None) != (self.status is DealStatus.WON):
            raise AttributionError(
                f"deal {self.deal_id}: give revenue (the won amount) exactly when the deal is won"
            )
        if any(money is not None and money < 0 for money in (self.amount, self.revenue)):
            raise AttributionError(f"deal {self.deal_id}: amount and revenue cannot be negative")

    def _moments(self) -> tuple[datetime | None, ...]:
        return (self.opened_at, self.closed_at, self.qualified_at)

    @property
    def value(self) -> Decimal:
        """What the deal is worth: its revenue if won, else its expected amount (0 if unknown)."""
        return self.revenue if self.revenue is not None else self.amount or Decimal(0)


@dataclass(frozen=True, slots=True)
class Journey:
    """A deal and the campaign responses linked to it, sorted by time then event id.

    Duplicate responses (the same event id) count once. Responses of another
    account, or after the deal closed, are refused: they cannot belong to it.
    """

    deal: DealFacts
    responses: tuple[CampaignResponded, ...] = ()

    def __post_init__(self) -> None:
        responses = canonical_events(self.responses)
        for response in responses:
            if response.account_id != self.deal.account_id:
                raise AttributionError(
                    f"response {response.event_id} is of account {response.account_id}, "
                    f"not of deal {self.deal.deal_id}'s account {self.deal.account_id}"
                )
            if self.deal.closed_at is not None and response.occurred_at > self.deal.closed_at:
                raise AttributionError(
                    f"response {response.event_id} came after deal {self.deal.deal_id} closed"
                )
        object.__setattr__(self, "responses", responses)

    @property
    def campaigns(self) -> tuple[str, ...]:
        """The distinct campaigns responded to, in the order of their first response."""
        return tuple(dict.fromkeys(response.campaign_id for response in self.responses))

    @property
    def path(self) -> tuple[str, ...]:
        """The campaigns in response order, a campaign repeated in a row written once."""
        path: list[str] = []
        for response in self.responses:
            if not path or path[-1] != response.campaign_id:
                path.append(response.campaign_id)
        return tuple(path)


def link_responses(
    deals: Iterable[DealFacts], responses: Iterable[CampaignResponded], lookback: timedelta
) -> tuple[Journey, ...]:
    """Every deal's journey: the responses of its account from `lookback` before it opened.

    A response belongs to a deal when it is of the deal's account and
    `opened_at - lookback <= occurred_at <= closed_at` (no upper bound while
    the deal is open); a response after the close never counts. The response's
    own deal_id, if any, is not used: deals link to campaigns through the
    account. One response may belong to several deals of an account (say one
    lost and the next one won): each of them counts it. Journeys come sorted
    by deal id, one per deal, with or without responses.
    """
    if lookback < timedelta(0):
        raise AttributionError(f"the lookback must not be negative, got {lookback}")
    by_account: defaultdict[str, list[CampaignResponded]] = defaultdict(list)
    for response in canonical_events(responses):
        by_account[response.account_id].append(response)
    times = {account: [r.occurred_at for r in held] for account, held in by_account.items()}
    journeys = []
    for deal in _distinct(deals):
        held = by_account.get(deal.account_id, [])
        moments = times.get(deal.account_id, [])
        start = bisect_left(moments, deal.opened_at - lookback)
        end = len(moments) if deal.closed_at is None else bisect_right(moments, deal.closed_at)
        journeys.append(Journey(deal, tuple(held[start:end])))
    return tuple(journeys)


def _distinct(deals: Iterable[DealFacts]) -> list[DealFacts]:
    by_id: dict[str, DealFacts] = {}
    for deal in deals:
        held = by_id.setdefault(deal.deal_id, deal)
        if held != deal:
            raise AttributionError(f"deal {deal.deal_id} was given twice with different facts")
    return [by_id[deal_id] for deal_id in sorted(by_id)]


def deal_facts_from_events(
    events: Iterable[EventBase], policy: Policy, *, opportunity_stage: str | None = None
) -> DealFacts:
    """Fold one deal's DealOpened, StageChanged, DealWon and DealLost events into its facts.

    Other events are ignored, but count as the deal's: a deal with touches and
    no deal_opened (a CRM that logged a call before the deal) raises
    DealNotOpened. `qualified_at` is the first time the deal was in
    `opportunity_stage` or a later stage of the policy's order (the deal's open
    time if it opened there); it defaults to the policy's
    `attribution.opportunity_stage` (Discovery, the first stage after
    Qualification, in the default policy). The first close (by event time)
    closes the deal; stage changes after it are ignored, as in the value stream.
    """
    stages = policy.stages
    boundary = (
        policy.attribution.opportunity_stage if opportunity_stage is None else opportunity_stage
    )
    boundary_rank = stages.rank(boundary)
    if boundary_rank is None:
        raise AttributionError(
            f"opportunity stage {boundary!r} is not one of the policy's stages {stages.order}"
        )
    events = tuple(events)
    facts = canonical_events(
        event
        for event in events
        if isinstance(event, DealOpened | StageChanged | DealWon | DealLost)
    )
    deal_ids = sorted({str(event.deal_id) for event in events if event.deal_id is not None})
    if len(deal_ids) != 1:
        raise NotOneDeal(f"expected the events of one deal, got deal ids {deal_ids}")
    opened = next((event for event in facts if isinstance(event, DealOpened)), None)
    if opened is None:
        raise DealNotOpened(f"deal {deal_ids[0]} has no deal_opened event")
    close = next((event for event in facts if isinstance(event, DealWon | DealLost)), None)
    opened_at = utc(opened.occurred_at)
    end = max(utc(close.occurred_at if close else facts[-1].occurred_at), opened_at)
    changes = [event for event in facts if isinstance(event, StageChanged)]
    visits = stage_history(opened, changes, Span(opened_at, end), close is None, stages)
    ranked = [(rank, visit) for visit in visits if (rank := stages.rank(visit.stage)) is not None]
    qualified = next((visit for rank, visit in ranked if rank >= boundary_rank), None)
    furthest = max(ranked, key=lambda pair: pair[0], default=None)
    status = DealStatus.OPEN
    if close is not None:
        status = DealStatus.WON if isinstance(close, DealWon) else DealStatus.LOST
    return DealFacts(
        deal_id=opened.deal_id,
        account_id=opened.account_id,
        opened_at=opened_at,
        status=status,
        closed_at=None if close is None else end,
        qualified_at=None if qualified is None else qualified.entered_at,
        amount=opened.amount,
        revenue=close.amount if isinstance(close, DealWon) else None,
        opened_stage=opened.stage,
        furthest_stage=opened.stage if furthest is None else furthest[1].stage,
        segment=opened.segment,
        owner_id=opened.owner_id,
        product=opened.product,
    )
