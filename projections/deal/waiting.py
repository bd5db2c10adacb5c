"""Wait time where the customer spoke last: the ball is in our court (DOMAIN rule 5)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from events.models import Direction
from projections.deal.touches import Touch
from projections.intervals import Span, SpanSet

__all__ = ["ball_in_our_court"]


def ball_in_our_court(touches: Sequence[Touch], end: datetime) -> SpanSet:
    """From each inbound email or call until our next move towards the customer.

    Our move is any outbound touch to the customer (email, call, quote, or a
    customer meeting, held or not); an internal meeting is not. A message left
    unanswered keeps the ball in our court until `end` (the close or the watermark).
    Callers intersect the result with the wait time.

    SQL twin: projections.archive.fold_sql.rules.ball_in_our_court_sql.
    """
    spans: list[Span] = []
    since: datetime | None = None
    for touch in sorted(touches, key=lambda touch: (touch.started_at, touch.event_id)):
        if touch.direction is Direction.INBOUND:
            since = touch.ended_at if since is None else since
        elif touch.answers_customer and since is not None:
            spans.append(Span(since, touch.started_at))
            since = None
    if since is not None:
        spans.append(Span(since, end))
    return SpanSet.of(spans)
