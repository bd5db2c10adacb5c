"""One deal from opening to close: its journey turned into touches, stage changes and a result."""

from __future__ import annotations

import random
from bisect import bisect
from dataclasses import dataclass

from streams.simulator.campaigns import during_responses
from streams.simulator.draws import geometric, lognormal, lognormal_table
from streams.simulator.groundtruth import STAGES
from streams.simulator.habits import RateLedger
from streams.simulator.journey import (
    DISCOVERY,
    QUALIFICATION,
    Journey,
    KeyTouch,
    Span,
    plan_journey,
)
from streams.simulator.leads import Lead, deal_prefix
from streams.simulator.recorder import DayBuckets, DealRecorder, Window
from streams.simulator.worktime import DAY, HOUR, MINUTE, working_time, working_time_before
from streams.simulator.world import PRODUCTS, Rep, World

__all__ = ["DealSummary", "simulate_deal"]

CADENCE_CAP = int(5.5 * DAY)
"""Longest planned wait between value-added touches outside a stall (8 days after office hours)."""
_CADENCE_MEDIAN = 2.5 * DAY
_VA_CHOICES = ((0.6, 1.0), (0.45, 0.9), (0.35, 0.7), (0.4, 0.85), (0.4, 0.8))
"""By stage: cumulative chances of a connected call, then an email exchange; else a meeting."""
_STAGE_MEETING = ("demo", "demo", "demo", "demo", "negotiation")
_LOSS_REASONS_EARLY = ("no budget", "no fit", "unresponsive")
_LOSS_REASONS_LATE = ("price", "competitor", "no decision", "timing", "unresponsive")
_COMPETITORS = ("Atlas CRM", "Brightline", "Corvid Systems", "Duneway")
_INTERNAL_MEETINGS = (0.4, 0.75, 0.9, 0.97)
"""Cumulative chances of 0, 1, 2, 3 internal meetings in a stage; else 4."""
_FAILED_CALLS = (("no_answer", 20, 45), ("voicemail", 40, 90), ("busy", 5, 12))


@dataclass(frozen=True, slots=True)
class DealSummary:
    """What a deal was planned to be, for ground truth: not read from its events."""

    deal_id: str
    account_index: int
    rep_id: str
    opened_at: int
    closes_at: int
    won: bool
    amount: int
    early_discovery: bool
    silent: bool


class _DealRun:
    """Walks a journey in time order, recording the touches a rep and customer would make."""

    def __init__(
        self, rng: random.Random, journey: Journey, rep: Rep, contacts: tuple[str, ...],
        record: DealRecorder, estimate: int, habits: RateLedger,
    ) -> None:  # fmt: skip
        self.rng, self.journey, self.rep, self.contacts = rng, journey, rep, contacts
        self.habits = habits
        self.record, self.estimate = record, estimate
        self.pool = (contacts[0],) * (len(contacts) + 1) + contacts[1:]
        """Contacts to draw from, the champion taking more than half of the draws."""
        self.quotes: list[tuple[int, int, bool]] = []
        """Planned quote versions in order: (sent at, amount, asked for by the customer)."""
        self.quote_id = f"{record.deal_id}-q1"
        self.last_va = journey.opened_at
        self.floor = journey.opened_at
        """The customer is heard from no sooner than this (the end of the last quiet window)."""

    def contact(self) -> str:
        """Mostly the champion, sometimes another contact on the deal."""
        pool = self.pool
        return pool[int(self.rng.random() * len(pool))]

    def at_office(self, earliest: int, latest: int) -> int | None:
        """A random office moment in [earliest, latest), or None if there is none."""
        if latest <= earliest:
            return None
        moment = working_time(earliest + int(self.rng.random() * (latest - earliest)))
        return moment if moment < latest else None

    def value_added(self, at: int, stage: int) -> None:
        """A value-added touch whose value lands at `at`: a call, an email reply or a meeting."""
        rng, record, pool = self.rng, self.record, self.pool
        contact = pool[int(rng.random() * len(pool))]
        call, email = _VA_CHOICES[stage]
        pick = rng.random()
        if pick < call:
            if rng.random() < 0.35:
                tried = max(at - int((0.5 + 5.5 * rng.random()) * HOUR), self.last_va + MINUTE)
                self.failed_call(working_time_before(tried, at - MINUTE), contact)
            record.call(at, contact, "outbound", "connected", int((6 + 29 * rng.random()) * MINUTE))
        elif pick < email:
            self.email_exchange(at, contact)
        else:
            minutes = 30 * (1 + int(rng.random() * 3))
            record.meeting(at, contact, _STAGE_MEETING[stage], "held", minutes)
        self.last_va = at

    def email_exchange(self, reply_at: int, contact: str) -> None:
        """The rep chases (a few emails for most, many for the chaser), the customer writes,
        the rep replies."""
        rng, record = self.rng, self.record
        room = reply_at - max(self.last_va, self.floor)
        asks_at = reply_at - min(int((1 + 19 * rng.random()) * HOUR), room // 2)
        fewest, most = self.rep.chase_emails
        chases = fewest + int(rng.random() * (most - fewest + 1))
        since, gap = self.last_va, (asks_at - self.last_va) // (chases + 2)
        for step in range(1, chases + 1):
            sent = working_time_before(since + gap * step, since + gap * (step + 1))
            record.email(sent, contact, "outbound", False)
        record.email(asks_at, contact, "inbound", False)
        record.email(reply_at, contact, "outbound", True)

    def failed_call(self, at: int, contact: str) -> None:
        """A call nobody answered: chasing."""
        pick = self.rng.random()
        outcome, shortest, longest = _FAILED_CALLS[(pick > 0.6) + (pick > 0.9)]
        seconds = shortest + int(self.rng.random() * (longest - shortest))
        self.record.call(at, contact, "outbound", outcome, seconds)

    def cadence_until(self, target: int, stage: int) -> None:
        """Value-added touches every few days until `target`, skipping quiet windows."""
        random, journey = self.rng.random, self.journey
        gaps = lognormal_table(_CADENCE_MEDIAN, 0.6, 2 * HOUR, CADENCE_CAP)
        while target - self.last_va > CADENCE_CAP:
            upcoming = working_time(self.last_va + gaps[int(random() * len(gaps))])
            quiet = journey.quiet_window_at(upcoming) if journey.quiet else None
            if quiet is not None:
                self.floor = quiet[1]
                upcoming = working_time(quiet[1] + int(random() * DAY))
            if upcoming >= target:
                return
            self.value_added(upcoming, stage)

    def key_touch(self, key: KeyTouch, span: Span) -> None:
        """The touch the stage is there for, sometimes after a failed first attempt."""
        rng, record, contact = self.rng, self.record, self.contact()
        kind = "discovery" if key.kind == "discovery_repeat" else key.kind
        if kind != "quote" and rng.random() < 0.15:
            tried = self.at_office(max(span.enter, key.at - 3 * DAY), key.at - HOUR)
            if tried is not None:
                missed = "no_show" if rng.random() < 0.5 else "rescheduled"
                record.meeting(tried, contact, kind, missed, 45)
        if kind == "quote":
            self.send_quote(0)
        else:
            record.meeting(key.at, contact, kind, "held", 45 + 15 * int(rng.random() * 2))
        if key.kind != "discovery_repeat":
            self.last_va = max(self.last_va, key.at)

    def plan_quotes(self) -> None:
        """Version 1 at the Proposal key touch (sent on the walk), then revisions asked for or
        not, in time order (sent now)."""
        rng, journey = self.rng, self.journey
        first = next((key.at for key in journey.keys if key.kind == "quote"), None)
        if first is None:
            return
        amount = _hundreds(self.estimate * rng.uniform(0.9, 1.15))
        self.quotes.append((first, amount, False))
        revisions = []
        rep = self.rep
        asked = geometric(rng, 0.5)
        unasked = self.habits.take(rep.rep_id, "unrequested revision", rep.unrequested_revisions)
        for requested in [True] * asked + [False] * unasked:
            at = self.at_office(first + 6 * HOUR, journey.closes_at - 6 * HOUR)
            if at is not None and journey.quiet_window_at(at) is None:
                revisions.append((at, requested))
        for at, requested in sorted(revisions):
            amount = _hundreds(amount * rng.uniform(0.9, 1.02))
            self.quotes.append((at, amount, requested))
        for index in range(1, len(self.quotes)):
            self.send_quote(index)

    def send_quote(self, index: int) -> None:
        """Quote version index + 1, to the champion."""
        at, amount, requested = self.quotes[index]
        self.record.quote(at, self.contacts[0], self.quote_id, index + 1, amount, requested)

    def noise(self, span: Span) -> None:
        """Touches that add no value: missed calls, follow-ups, internal meetings, inbound calls."""
        random, record, leave, pool = self.rng.random, self.record, span.leave, self.pool
        begins = span.enter + 5 * MINUTE
        room = leave - begins
        if room <= 0:
            return
        days = room / DAY
        for _ in range(int(days * 0.25 + random())):
            at = working_time(begins + int(random() * room))
            if at < leave:
                pick = random()
                outcome, shortest, longest = _FAILED_CALLS[(pick > 0.6) + (pick > 0.9)]
                seconds = shortest + int(random() * (longest - shortest))
                record.call(at, pool[int(random() * len(pool))], "outbound", outcome, seconds)
        for _ in range(int(days * 0.12 + random())):
            at = working_time(begins + int(random() * room))
            if at < leave:
                record.email(at, pool[int(random() * len(pool))], "outbound", False)
        for _ in range(_internal_meetings(random()) if span.stage >= DISCOVERY else 0):
            at = working_time(begins + int(random() * room))
            if at < leave:
                record.meeting(at, None, "internal", "held", 30 * (1 + int(random() * 2)))
        for _ in range(int(days * 0.04 + random())):
            at = working_time(begins + int(random() * room))
            if at < leave and self.journey.quiet_window_at(at) is None:
                seconds = (3 + int(random() * 17)) * MINUTE
                record.call(at, pool[int(random() * len(pool))], "inbound", "connected", seconds)

    def chase_silence(self, quiet: tuple[int, int]) -> None:
        """While the customer is silent the rep keeps chasing, to no avail."""
        rng = self.rng
        at = quiet[0] + int(rng.uniform(1, 5) * DAY)
        ends = min(quiet[1], self.journey.closes_at)
        while (at := working_time(at)) < ends:
            if rng.random() < 0.6:
                self.record.email(at, self.contacts[0], "outbound", False)
            else:
                self.failed_call(at, self.contacts[0])
            at += int(rng.uniform(3, 8) * DAY)

    def overproduce(self) -> None:
        """Now and then a budgetary quote goes out while the deal is still being qualified."""
        if self.rng.random() >= 0.04:
            return
        for span in self.journey.spans:
            if span.stage == QUALIFICATION:
                at = self.at_office(span.enter + HOUR, span.leave)
                if at is not None and self.journey.quiet_window_at(at) is None:
                    quote_id = f"{self.record.deal_id}-budget"
                    self.record.quote(at, self.contacts[0], quote_id, 1, self.estimate, False)
                return

    def walk(self) -> None:
        """Every stage in order: its stage change, key touches, steady value-added work, noise.

        The last step to draw: it stops once nothing it could still make falls in the window.
        """
        record, keys = self.record, sorted(self.journey.keys, key=lambda key: key.at)
        previous = None
        for span in self.journey.spans:
            if min(span.enter, self.last_va) >= record.until:
                return
            if previous is not None:
                record.stage_changed(span.enter, STAGES[previous.stage], STAGES[span.stage])
            for key in keys:
                if span.enter <= key.at < span.leave:
                    self.cadence_until(key.at, span.stage)
                    self.key_touch(key, span)
            self.cadence_until(span.leave, span.stage)
            self.noise(span)
            previous = span

    def close(self) -> None:
        """Won at the last quoted amount, or lost for a reason fitting the stage."""
        rng, journey = self.rng, self.journey
        if journey.won:
            self.record.deal_won(journey.closes_at, self.amount)
            return
        reasons = (
            _LOSS_REASONS_LATE if journey.spans[-1].stage > QUALIFICATION else _LOSS_REASONS_EARLY
        )
        reason = reasons[int(rng.random() * len(reasons))]
        competitor = (
            _COMPETITORS[int(rng.random() * len(_COMPETITORS))] if reason == "competitor" else None
        )
        self.record.deal_lost(journey.closes_at, reason, competitor)

    @property
    def amount(self) -> int:
        """What the deal is worth if won: the last quote, else the estimate."""
        return self.quotes[-1][1] if self.quotes else self.estimate


def _hundreds(amount: float) -> int:
    return max(100, round(amount / 100) * 100)


def _internal_meetings(draw: float) -> int:
    """Mostly none to two per stage (the allowance); sometimes more: over-processing."""
    return bisect(_INTERNAL_MEETINGS, draw)


def simulate_deal(
    world: World, lead: Lead, *, habits: RateLedger, window: Window, out: DayBuckets
) -> DealSummary:
    """Deal `lead` from opening to close, keeping the events inside `window` in `out` by day.

    It goes on with the lead's random stream, and its rep's habits come from
    `habits`; deals simulated in the order they open are the same whichever
    window is asked for.
    """
    seed, account, contacts, rng = world.config.seed, lead.account, lead.contacts, lead.rng
    rep = world.reps[account.rep_index]
    journey = plan_journey(
        rng, lead.opened_at, rep=rep, habits=habits, pace=account.segment.pace,
        win_lift=lead.source.profile.win_lift if lead.source else 1.0, history_end=world.end_at,
    )  # fmt: skip
    segment = account.segment
    estimate = _hundreds(lognormal(rng, segment.median_amount, 0.45))
    product = PRODUCTS[int(rng.random() * len(PRODUCTS))]
    record = DealRecorder(
        prefix=deal_prefix(seed, lead.index), account_id=account.account_id,
        deal_id=lead.deal_id, rep_id=rep.rep_id, window=window, out=out, used=lead.ids_used,
    )  # fmt: skip
    record.deal_opened(
        lead.opened_at, contact_id=contacts[0], name=f"{account.name} - {product}",
        amount=estimate, segment=segment.name, industry=account.industry, product=product,
    )  # fmt: skip
    for at, contact, campaign_id, kind in during_responses(rng, world, account, contacts, journey):
        record.campaign_response(at, contact, campaign_id, kind)
    run = _DealRun(rng, journey, rep, contacts, record, estimate, habits)
    run.plan_quotes()
    run.overproduce()
    for quiet in journey.quiet:
        run.chase_silence(quiet)
    run.close()
    run.walk()
    return DealSummary(
        lead.deal_id, account.index, rep.rep_id, lead.opened_at, journey.closes_at, journey.won,
        run.amount, journey.early_discovery, journey.silent,
    )  # fmt: skip
