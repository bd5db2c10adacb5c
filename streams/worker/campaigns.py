"""Campaign results in the worker: deal and response facts regrouped by account, per campaign.

`touches` is keyed by deal (by account while there is no deal), so an account's
campaign responses and its deals sit in different partitions; attribution needs
them together. The fold pipeline therefore forwards every deal_opened,
stage_changed, deal_won, deal_lost and campaign_response it takes, as the bytes it
took and keyed by account, to the internal topic `<touches>-by-account`: no other agent
reads `touches` for this. The `campaign-accounts` agent on that topic runs the same keyed
machine as the deals (streams.worker.keyed): it keeps each account's facts (one
changelog record per event, so duplicates and replays change nothing), recomputes each
touched account once per batch
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

from collections.abc import Iterable, Sequence
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
    StageChanged,
)
from projections.archive import LogRecord
from projections.campaigns.rollup import AccountContribution, CampaignRollups, account_contribution
from projections.policy.model import Policy
from streams.settings import Settings
from streams.worker.batching import BATCH_TIMER_S, raw_topic
from streams.worker.deal_store import DealEventStore
from streams.worker.keyed import FactSet, KeyedMachine, Taken, run_machine
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
COUNTS_TABLE = "account-campaign-counts"
ACCOUNT_TOPIC_CONFIG = {"retention.ms": str(7 * 24 * 3600 * 1000), "cleanup.policy": "delete"}
"""A derived topic: what matters is kept in the tables' changelogs once it is read, and a
new consumer group rebuilds it from `touches`; a week covers any pause of the agent."""
FORWARDED = (DealOpened, StageChanged, DealWon, DealLost, CampaignResponded)
"""The facts attribution needs: a deal's milestones and outcome, and the responses."""
HELD_ACCOUNTS = 20_000
"""Accounts whose facts are kept decoded in memory (the rest are read back when touched)."""


def account_topic(app: faust.App, settings: Settings) -> TopicT:
    """The internal `<touches>-by-account` topic: encoded deal and response events by account."""
    return raw_topic(app, settings.touches_by_account_topic)


@dataclass(frozen=True)
class AccountForwarder:
    """Sends each deal and response fact the fold pipeline takes on to the by-account topic,
    as the very bytes it was taken from (nothing is encoded again).

    A fact listener of the keyed machine: called before the source message is acked.
    `force` publishes at once rather than at the next commit; the producer is
    flushed before offsets are committed, so nothing acked is left unsent.
    """

    topic: TopicT

    async def __call__(self, fact: EventBase, record: LogRecord) -> None:
        if isinstance(fact, FORWARDED):
            await self.topic.send(key=fact.account_id.encode(), value=record.value, force=True)


@dataclass
class CampaignPipeline:
    """The accounts' part of the worker's keyed machine (streams.worker.keyed): each account's
    deal and response facts, its contribution per campaign, and the totals.

    Each touched account is recomputed once per batch; its messages are acked after, so
    the replay that follows a crash recomputes them.
    """

    app: faust.App
    policy: Policy
    contributions: PartitionedTable  # account_id -> AccountContribution
    machine: KeyedMachine[FactSet] = field(init=False)
    _rollups: CampaignRollups | None = None

    @classmethod
    def build(
        cls, app: faust.App, policy: Policy, settings: Settings, dead_letters: TopicT
    ) -> CampaignPipeline:
        pipeline = cls(
            app=app,
            policy=policy,
            contributions=PartitionedTable.build(app, CONTRIBUTIONS_TABLE, default=dict),
        )
        pipeline.machine = KeyedMachine(
            app=app,
            part=pipeline,
            store=DealEventStore.build(app, ACCOUNT_LOG_TABLE),
            counters=app.Table(COUNTS_TABLE, default=dict),
            dead_letters=dead_letters,
            source_topic=settings.touches_by_account_topic,
            max_held=HELD_ACCOUNTS,
        )
        pipeline.machine.follow_rebalances()
        return pipeline

    async def take(self, stream: faust.StreamT[bytes], event: EventT[bytes]) -> None:
        await self.machine.take(stream, event)

    async def _flush(self, stream: faust.StreamT[bytes]) -> None:
        await self.machine._flush(stream)

    # KeyedPart
    def key_of(self, fact: EventBase) -> str | None:
        return fact.account_id

    def holder(self, key: str, facts: Iterable[EventBase]) -> FactSet:
        return FactSet(facts)

    async def refresh(self, key: str, holder: FactSet, partition: int) -> None:
        """Recompute one account; keep its contribution and apply the change to the totals."""
        try:
            new = account_contribution(holder, self.policy)
        except Exception:
            # The events are stored; the account's next event recomputes it.
            log.exception("campaign_contribution_failed", account_id=key)
            return
        old: AccountContribution = self.contributions.get(key) or {}
        if new != old:
            self.rollups().replace(old, new)
            self.contributions[key] = new

    async def batch_done(self, taken: Sequence[Taken]) -> None:
        return None

    def forget(self) -> None:
        self._rollups = None

    def account_facts(self, account_id: str) -> list[EventBase]:
        """The account's facts this worker holds."""
        held = self.machine.held(account_id)
        return [] if held is None else list(held)

    def rollups(self) -> CampaignRollups:
        """The campaign totals: summed once from the durable per-account contributions of this
        worker's partitions (after recovery or a rebalance), then kept current by differences."""
        if self._rollups is not None:
            return self._rollups
        rollups = CampaignRollups.summed(self.contributions.held_values())
        if not self.app.in_recovery:  # while recovering, the table is still filling
            self._rollups = rollups
        return rollups

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
    campaigns = CampaignPipeline.build(app, pipeline.folder.policy, settings, pipeline.dead_letters)
    pipeline.fact_listeners.append(AccountForwarder(topic))
    run_machine(app, campaigns.machine, topic, "campaign-accounts", BATCH_TIMER_S)

    @app.page("/gemba/campaigns/")
    async def campaigns_page(web: Any, request: Any) -> Any:
        return web.json(campaigns.summary())

    return campaigns
