"""The touch rules: each touch of a deal becomes value-added, necessary, or waste."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from events.models import (
    CallLogged,
    CallOutcome,
    Direction,
    EmailLogged,
    MeetingKind,
    MeetingLogged,
    MeetingOutcome,
    QuoteSent,
    TouchEvent,
)
from projections.categories import TouchClass, WasteCategory
from projections.deal.stages import StageVisit, stage_at
from projections.deal.touches import Touch, touch_span
from projections.intervals import Span
from projections.policy.model import Policy, TouchRules

__all__ = ["TouchMemo", "classify_touches"]

VA = TouchClass.VALUE_ADDED
NNVA = TouchClass.NECESSARY_NON_VALUE_ADDED
WASTE = TouchClass.WASTE


class Verdict(NamedTuple):
    """What a rule decided about one touch."""

    touch_class: TouchClass | None
    waste: WasteCategory | None
    rule: int


@dataclass
class _History:
    """What earlier touches of the deal tell the rules about the next one.

    The row of outbound emails without a reply (rule 6) is broken by any
    two-way contact: an inbound email or call, a connected call, a held
    customer meeting. Internal meetings count per stage name, so a deal that
    comes back to a stage does not get a fresh allowance.

    SQL twin: projections.archive.fold_sql.rules.touch_rule_state_sql and rule_counts_sql.
    """

    emails_without_reply: int = 0
    internal_meetings: Counter[str] = field(default_factory=Counter)
    held_meetings: Counter[MeetingKind] = field(default_factory=Counter)


def _meeting(meeting: MeetingLogged, stage: str, rules: TouchRules, seen: _History) -> Verdict:
    """Rules 1-3: no-show; internal meetings within the allowance; held customer meetings.

    SQL twin: projections.archive.fold_sql.rules.meeting_rules_sql.
    """
    if meeting.outcome is not MeetingOutcome.HELD:
        return Verdict(WASTE, WasteCategory.NO_SHOW, 1)
    if meeting.kind is MeetingKind.INTERNAL:
        seen.internal_meetings[stage] += 1
        if seen.internal_meetings[stage] > rules.internal_meeting_allowance_per_stage:
            return Verdict(WASTE, WasteCategory.OVER_PROCESSING, 2)
        return Verdict(NNVA, None, 2)
    seen.held_meetings[meeting.kind] += 1
    seen.emails_without_reply = 0
    if meeting.kind in rules.rework_when_repeated and seen.held_meetings[meeting.kind] > 1:
        return Verdict(WASTE, WasteCategory.REWORK, 3)
    if meeting.kind in rules.value_added_meeting_kinds:
        return Verdict(VA, None, 3)
    return Verdict(NNVA, None, 3)


def _call(call: CallLogged, seen: _History) -> Verdict:
    """Rule 4: a connected call is value-added, any other is chasing.

    SQL twin: projections.archive.fold_sql.rules.call_rule_sql.
    """
    if call.outcome is CallOutcome.CONNECTED:
        seen.emails_without_reply = 0
        return Verdict(VA, None, 4)
    return Verdict(WASTE, WasteCategory.CHASING, 4)


def _email(email: EmailLogged, rules: TouchRules, seen: _History) -> Verdict:
    """Rules 5-6: inbound takes none of our time; a reply is value-added; chasing past a row.

    SQL twin: projections.archive.fold_sql.rules.email_rules_sql.
    """
    if email.direction is Direction.INBOUND:
        seen.emails_without_reply = 0
        return Verdict(None, None, 5)
    if email.replies_to_customer:
        return Verdict(VA, None, 6)
    seen.emails_without_reply += 1
    if seen.emails_without_reply > rules.emails_before_chasing:
        return Verdict(WASTE, WasteCategory.CHASING, 6)
    return Verdict(NNVA, None, 6)


def _quote(quote: QuoteSent, stage: str, rules: TouchRules) -> Verdict:
    """Rule 7: overproduction before qualification; the first or an asked-for version is VA.

    SQL twin: projections.archive.fold_sql.rules.quote_rule_sql.
    """
    if stage in rules.overproduction_stages:
        return Verdict(WASTE, WasteCategory.OVERPRODUCTION, 7)
    if quote.version == 1 or quote.requested_by_customer:
        return Verdict(VA, None, 7)
    return Verdict(WASTE, WasteCategory.REWORK, 7)


def _verdict(event: TouchEvent, stage: str, rules: TouchRules, seen: _History) -> Verdict:
    match event:
        case MeetingLogged():
            return _meeting(event, stage, rules, seen)
        case CallLogged():
            return _call(event, seen)
        case EmailLogged():
            return _email(event, rules, seen)
        case QuoteSent():
            return _quote(event, stage, rules)


def _touch(event: TouchEvent, span: Span, stage: str, verdict: Verdict) -> Touch:
    return Touch(
        event_id=event.event_id,
        kind=event.type,
        direction=(
            event.direction if isinstance(event, CallLogged | EmailLogged) else Direction.OUTBOUND
        ),
        started_at=span.start,
        ended_at=span.end,
        stage=stage,
        touch_class=verdict.touch_class,
        waste=verdict.waste,
        rule=verdict.rule,
        outcome=event.outcome if isinstance(event, CallLogged | MeetingLogged) else None,
        meeting_kind=event.kind if isinstance(event, MeetingLogged) else None,
    )


@dataclass(slots=True)
class TouchMemo:
    """What one deal's last classification built, to build no part of it twice: each touch
    event's span (by event identity, under one policy), and each classified Touch with the
    inputs it was made of. Not a rule: the verdicts are decided again every time; a Touch is
    reused only when its event, clipped span, stage and verdict are all the same.
    """

    spans: dict[str, tuple[TouchEvent, Span]] = field(default_factory=dict)
    touches: dict[str, tuple[TouchEvent, Span, str, Verdict, Touch]] = field(default_factory=dict)

    def span(self, event: TouchEvent, policy: Policy) -> Span:
        held = self.spans.get(event.event_id)
        if held is not None and held[0] is event:
            return held[1]
        span = touch_span(event, policy.standard_minutes)
        self.spans[event.event_id] = (event, span)
        return span


def _within_life(span: Span, life: Span) -> bool:
    """Whether the touch meets the life (one without length: falls in [open, close)).

    SQL twin: projections.archive.fold_sql.rules.touches_in_life_sql.
    """
    if span.end > span.start:
        return span.start < life.end and span.end > life.start
    return life.start <= span.start < life.end


def classify_touches(
    events: Iterable[TouchEvent],
    life: Span,
    visits: Sequence[StageVisit],
    policy: Policy,
    memo: TouchMemo | None = None,
) -> tuple[Touch, ...]:
    """Apply the touch rules (first match wins) to the touches within the deal's life.

    Touches are taken in order of their start, then event id. A touch wholly
    outside [open, close) is not part of the deal's value stream; one that
    straddles the open or the close keeps only its part inside. Its stage is
    the stage at the start of that part.

    SQL twin: projections.archive.fold_sql.rules.touch_rules_sql.
    """
    if memo is None:
        spans = [(touch_span(event, policy.standard_minutes), event) for event in events]
    else:
        spans = [(memo.span(event, policy), event) for event in events]
    spans.sort(key=lambda pair: (pair[0].start, pair[1].event_id))
    seen = _History()
    touches = []
    made: dict[str, tuple[TouchEvent, Span, str, Verdict, Touch]] = {}
    for span, event in spans:
        if not _within_life(span, life):
            continue
        clipped = span.clip(life)
        stage = stage_at(visits, clipped.start)
        verdict = _verdict(event, stage, policy.rules, seen)
        if memo is None:
            touches.append(_touch(event, clipped, stage, verdict))
            continue
        held = memo.touches.get(event.event_id)
        if held and held[0] is event and held[1:4] == (clipped, stage, verdict):
            touch = held[4]
        else:
            touch = _touch(event, clipped, stage, verdict)
        made[event.event_id] = (event, clipped, stage, verdict, touch)
        touches.append(touch)
    if memo is not None:
        memo.touches = made
    return tuple(touches)
