"""Campaign results in the worker: deal and response facts regrouped by account, per campaign.

`touches` is keyed by deal (by account while there is no deal), so an account's
campaign responses and its deals sit in different partitions; attribution needs
them together. The fold pipeline therefore forwards every deal_opened,
stage_changed, deal_won, deal_lost and campaign_response it takes, re-encoded and
keyed by account, to the internal topic `<touches>-by-account`: no other agent
reads `touches` for this. The `campaign-accounts` agent on that topic keeps each
account's facts (one changelog record per event, so duplicates and replays change
nothing), recomputes each touched account once per batch
(`projections.campaigns.rollup.account_contribution`: deal facts, linked responses,
reach, pipeline, revenue credit under every rule-based model), keeps the account's
contribution in a changelog-backed table and applies the difference to per-campaign
roll-ups in memory, rebuilt from that table after recovery or a rebalance. The
roll-ups are served at `/gemba/campaigns/`.

The data-driven models (Markov, Shapley) need a fit over every closed journey, so
they are not kept in the stream; the history archive and the command line do them.

Delivery is at least once end to end: a forwarded copy is sent before its source
message is acked (the producer is flushed before every offset commit), and an
account's messages are acked only after it was recomputed; a crash replays, forwards
again and recomputes, and the same events give the same contribution.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import faust
import structlog
from faust.types import EventT, TopicT

from events import (
    CampaignResponded,
    DealLost,
    DealOpened,
    DealWon,
    EventBase,
    EventRejected,
    StageChanged,
    decode,
    encode,
)
from projections.campaigns.rollup import AccountContribution, CampaignRollups, account_contribution
from projections.deal.event_set import preferred_copy
from projections.policy.model import Policy
from streams.settings import Settings
from streams.worker.batching import BATCH_TIMER_S, YIELD_EVERY, Batch, raw_topic, send_dead_letter
from streams.worker.deal_store import DealEventStore
from streams.worker.partitioned import PartitionedTable
from streams.worker.pipeline import ValueStreamPipeline

__all__ = [
    "ACCOUNT_LOG_TABLE",
    "ACCOUNT_TOPIC_CONFIG",
    "CONTRIBUTIONS_TABLE",
    "AccountForwarder",
    "CampaignPipeline",
    "account_topic",
    "attach_campaign_pipeline",
]

log = structlog.get_logger("gemba.campaigns")
ACCOUNT_LOG_TABLE = "account-campaign-log"
CONTRIBUTIONS_TABLE = "account-campaign-contributions"
ACCOUNT_TOPIC_CONFIG = {"retention.ms": str(7 * 24 * 3600 * 1000), "cleanup.policy": "delete"}
"""A derived topic: what matters is kept in the tables' changelogs once it is read, and a
new consumer group rebuilds it from `touches`; a week covers any pause of the agent."""
FORWARDED = (DealOpened, StageChanged, DealWon, DealLost, CampaignResponded)
"""The facts attribution needs: a deal's milestones and outcome, and the responses."""
DECODED_ACCOUNTS = 5_000
"""Accounts whose events are kept decoded in memory (the rest are decoded when recomputed)."""


def account_topic(app: faust.App, settings: Settings) -> TopicT:
    """The internal `<touches>-by-account` topic: encoded deal and response events by account."""
    return raw_topic(app, settings.touches_by_account_topic)


@dataclass(frozen=True)
class AccountForwarder:
    """Sends each deal and response fact the fold pipeline takes on to the by-account topic.

    A fact listener of the pipeline: called before the source message is acked.
    `force` publishes at once rather than at the next commit; the producer is
    flushed before offsets are committed, so nothing acked is left unsent.
    """

    topic: TopicT

    async def __call__(self, fact: EventBase) -> None:
        if isinstance(fact, FORWARDED):
            await self.topic.send(key=fact.account_id.encode(), value=encode(fact), force=True)


@dataclass
class CampaignPipeline:
    """Each account's deal and response facts, its contribution per campaign, and the totals.

    Messages are taken one by one (stored by account and event id, or dead-lettered)
    and each touched account is recomputed once per batch (streams.worker.batching.Batch
    says when one is due: by size, quiet or age, larger while catching up). Messages are
    acked after the batch, so the replay that follows a crash recomputes them.
    """

    app: faust.App
    policy: Policy
    store: DealEventStore  # each account's encoded events, one changelog record per event
    contributions: PartitionedTable  # account_id -> AccountContribution
    dead_letters: TopicT
    _batch: Batch = field(default_factory=Batch)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _decoded: OrderedDict[str, dict[str, EventBase]] = field(default_factory=OrderedDict)
    _rollups: CampaignRollups | None = None

    @classmethod
    def build(cls, app: faust.App, policy: Policy, dead_letters: TopicT) -> CampaignPipeline:
        pipeline = cls(
            app=app,
            policy=policy,
            store=DealEventStore.build(app, ACCOUNT_LOG_TABLE),
            contributions=PartitionedTable.build(app, CONTRIBUTIONS_TABLE, default=dict),
            dead_letters=dead_letters,
        )
        app.on_partitions_revoked.connect(pipeline._partitions_revoked)
        app.on_partitions_assigned.connect(pipeline._forget_rollups)
        app.on_rebalance_complete.connect(pipeline._forget_rollups)  # sent once recovered
        return pipeline

    async def take(self, stream: faust.StreamT[bytes], event: EventT[bytes]) -> None:
        """Store or dead-letter one message; recompute accounts once enough have gathered."""
        async with self._lock:
            # Table writes go to the changelog partition of the current event.
            stream._set_current_event(event)  # type: ignore[attr-defined]
            account_id = await self._keep(event)
            self._batch.add(event)
            if account_id is not None:
                self._batch.touch(account_id, event)
            if self._batch.full:
                await self._flush(stream)

    async def flush_if_due(self, stream: faust.StreamT[bytes]) -> None:
        """Recompute what has gathered once the topic goes quiet or the batch grows old."""
        async with self._lock:
            if self._batch.due:
                await self._flush(stream)

    async def _flush(self, stream: faust.StreamT[bytes]) -> None:
        """Recompute every touched account once, then ack the batch's messages."""
        pending, touched = self._batch.close()
        for done, (account_id, last_event) in enumerate(sorted(touched.items()), 1):
            stream._set_current_event(last_event)  # type: ignore[attr-defined]
            self._retally(account_id)
            if done % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        for event in pending:
            await stream.ack(event)

    async def _keep(self, event: EventT[bytes]) -> str | None:
        """Store the message's fact under its account; None if it had to be dead-lettered."""
        try:
            fact = decode(event.message.value or b"")
        except EventRejected as exc:
            await send_dead_letter(self.dead_letters, event.message, str(exc))
            return None
        account_id = fact.account_id
        held = self.store.events_of(account_id).get(fact.event_id)
        if held is not None:
            # The same fact again (a replay re-forwards it): keep the copy the pure
            # projection would keep, whatever the arrival order.
            fact = preferred_copy(decode(held), fact)
        encoded = encode(fact).decode()
        if encoded != held:
            self.store.put(account_id, fact.event_id, encoded)
        if account_id in self._decoded:
            self._decoded[account_id][fact.event_id] = fact
        return account_id

    def _retally(self, account_id: str) -> None:
        """Recompute one account; keep its contribution and apply the change to the totals."""
        try:
            new = account_contribution(self.account_facts(account_id), self.policy)
        except Exception:
            # The events are stored; the account's next event recomputes it.
            log.exception("campaign_contribution_failed", account_id=account_id)
            return
        old: AccountContribution = self.contributions.get(account_id) or {}
        if new != old:
            self.rollups().replace(old, new)
            self.contributions[account_id] = new

    def account_facts(self, account_id: str) -> list[EventBase]:
        """The account's stored events, decoded (kept decoded for the most recent accounts)."""
        stored = self.store.events_of(account_id)
        decoded = self._decoded.get(account_id)
        if decoded is None or len(decoded) != len(stored):
            decoded = {event_id: decode(raw) for event_id, raw in stored.items()}
        self._decoded[account_id] = decoded
        self._decoded.move_to_end(account_id)
        while len(self._decoded) > DECODED_ACCOUNTS:
            self._decoded.popitem(last=False)
        return list(decoded.values())

    def rollups(self) -> CampaignRollups:
        """The campaign totals: summed once from the durable per-account contributions of this
        worker's partitions (after recovery or a rebalance), then kept current by differences."""
        if self._rollups is not None:
            return self._rollups
        rollups = CampaignRollups.summed(self.contributions.held_values())
        if not self.app.in_recovery:  # while recovering, the table is still filling
            self._rollups = rollups
        return rollups

    async def _partitions_revoked(self, *args: Any, **kwargs: Any) -> None:
        """Give back what was taken and not recomputed (Kafka redelivers it to the partition's
        new owner); the totals are rebuilt from the tables."""
        async with self._lock:
            self._batch.close()
            self._decoded.clear()
            self._rollups = None

    async def _forget_rollups(self, *args: Any, **kwargs: Any) -> None:
        self._rollups = None

    def summary(self) -> dict[str, Any]:
        """The `/gemba/campaigns/` page: each campaign's tally, money as strings, stamped.

        Over the accounts of this worker's partitions (all of them with one worker).
        """
        return {
            "policy_version": self.policy.version,
            "campaigns": {
                tally.campaign_id: tally.to_document() for tally in self.rollups().tallies()
            },
        }


def attach_campaign_pipeline(
    app: faust.App, pipeline: ValueStreamPipeline, settings: Settings
) -> CampaignPipeline:
    """Add the campaign roll-ups to a built app: forwarder, by-account agent, timer, page.

    Call it in `build_worker` after the pipeline is built. The by-account topic is
    created with the others before the worker starts (streams.worker.run.ensure_topics),
    with as many partitions as `touches`, so its partitions and the tables' changelog
    partitions line up.
    """
    topic = account_topic(app, settings)
    campaigns = CampaignPipeline.build(app, pipeline.folder.policy, pipeline.dead_letters)
    pipeline.fact_listeners.append(AccountForwarder(topic))
    streams: list[faust.StreamT[bytes]] = []

    @app.agent(topic, name="campaign-accounts")
    async def tally_campaign_accounts(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        # Acks are manual: a message is acked once its account has been recomputed.
        stream.enable_acks = False
        streams[:] = [stream]
        async for event in stream.events():
            await campaigns.take(stream, event)
            yield None

    @app.timer(BATCH_TIMER_S, name="campaign-accounts-flush")  # type: ignore[untyped-decorator]
    async def tally_quiet_accounts() -> None:
        for stream in streams:
            await campaigns.flush_if_due(stream)

    @app.page("/gemba/campaigns/")
    async def campaigns_page(web: Any, request: Any) -> Any:
        return web.json(campaigns.summary())

    return campaigns
