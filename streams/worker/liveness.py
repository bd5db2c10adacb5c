"""An agent that dies, or a table recovery that makes no progress, takes the worker down:
`/ready` says which agent or which changelog partitions and why, and the process exits
non-zero, so that a supervisor (systemd, Kubernetes, Compose) restarts it.

Faust's default agent supervisor logs a crash and starts a new actor on the same stream,
past the message the old one died on. That message is never acked, so nothing of its
partition is committed again: the partition's work stops while the worker looks healthy
(seen: a dead letter too large to send killed the fold agent; `/ready` said 200 for good).
A restarted process starts from the last commit and meets the message again, which is
what at-least-once needs; a fault that repeats shows as a crash loop, not as silence.

A table recovery can stop too: Faust then logs "Still fetching changelog topics for
recovery" forever while `/ready` says 503 "recovering tables" (seen in CI: a survivor
taking over a stopped worker's partitions stayed at "have offset -1" of 1,563 changelog
records). Faust's recovery has no deadline of its own, and its timers and tasks start only
once recovery is complete, so `RecoveryWatch` is a service started with the app itself:
once a second it reads the recovery's offsets, and when none has moved for
`recovery_stall_timeout_s` (GEMBA_RECOVERY_STALL_TIMEOUT_S) it logs `table_recovery_stuck`
naming each changelog partition with the offset it has and the one it needs, `/ready`
answers 503 with that reason, and the worker exits non-zero. A restarted worker recovers
its tables from the changelogs again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
import structlog
from faust.types import TP
from mode import OneForOneSupervisor, Service
from mode.types import ServiceT

from streams.errors import GembaError

__all__ = [
    "AgentDied",
    "ChangelogLag",
    "RecoveryProgress",
    "RecoveryStalled",
    "RecoveryWatch",
    "StopWorkerOnCrash",
    "dead_agent",
    "stalled_recovery",
    "stop_when_an_agent_dies",
    "stop_when_recovery_stalls",
    "why_the_worker_stops",
]

log = structlog.get_logger("gemba.worker")

CRASH_GRACE_S = 1.0
"""How long a worker whose agent died still answers (`/ready`: 503, naming the agent) before
it stops, so that a probe or a person looking sees why it goes."""


class AgentDied(GembaError):
    """An agent of the worker raised: the worker stops, and its supervisor should restart it."""

    def __init__(self, agent: str, cause: BaseException) -> None:
        super().__init__(
            f"agent {agent!r} died of {type(cause).__name__}: {cause}; the worker stops "
            "so that its supervisor restarts it (it resumes from its last commit)"
        )
        self.agent = agent
        self.__cause__ = cause


def _death(actor: ServiceT) -> AgentDied | None:
    """How the actor (an agent's instance) died of its own error; None if it did not (it
    lives, or a rebalance cancelled it)."""
    cause = actor.crash_reason
    if not actor.crashed or cause is None or isinstance(cause, asyncio.CancelledError):
        return None
    agent = getattr(actor, "agent", None)
    return AgentDied(str(getattr(agent, "name", actor)), cause)


def dead_agent(app: faust.App) -> AgentDied | None:
    """The first agent of the app found dead of its own error; None while all live."""
    for agent in app.agents.values():
        for actor in getattr(agent, "_actors", ()):
            died = _death(actor)
            if died is not None:
                return died
    return None


class StopWorkerOnCrash(OneForOneSupervisor):
    """Crashes the app (and so the worker) when one of its agent's actors dies.

    An actor cancelled by a rebalance, not by its own error, is replaced as Faust does.
    """

    async def restart_services(self, services: list[ServiceT]) -> None:
        for actor in services:
            died = _death(actor)
            if died is None:
                await self.restart_service(actor)
                continue
            log.error("agent_died", agent=died.agent, error=str(died), exc_info=died.__cause__)
            await asyncio.sleep(CRASH_GRACE_S)  # /ready says 503 meanwhile (dead_agent)
            app: faust.App = actor.agent.app  # type: ignore[attr-defined]
            await app.crash(died)
            return


def stop_when_an_agent_dies(app: faust.App) -> None:
    """Have every agent of the app supervised by StopWorkerOnCrash (call before it starts)."""
    app.conf.agent_supervisor = StopWorkerOnCrash  # type: ignore[assignment]


RECOVERY_CHECK_EVERY_S = 1.0
"""How often RecoveryWatch reads the recovery's offsets."""


@dataclass(frozen=True, order=True)
class ChangelogLag:
    """A changelog partition table recovery still reads: the offset it has applied and the
    last one it needs (Faust's "have offset" and "need offset")."""

    topic: str
    partition: int
    have: int
    need: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}] at offset {self.have} of {self.need}"


class RecoveryStalled(GembaError):
    """Table recovery made no progress for the set time: the worker stops, and its supervisor
    should restart it."""

    def __init__(self, stalled_s: float, lags: tuple[ChangelogLag, ...]) -> None:
        where = (
            "changelog partitions " + ", ".join(map(str, lags))
            if lags
            else "no changelog partition left to read, yet recovery did not end"
        )
        super().__init__(
            f"table recovery made no progress for {stalled_s:.0f}s ({where}); the worker "
            "stops so that its supervisor restarts it (it recovers its tables from the "
            "changelogs again); raise GEMBA_RECOVERY_STALL_TIMEOUT_S if recovery is only slow"
        )
        self.stalled_s = stalled_s
        self.lags = lags


@dataclass
class RecoveryProgress:
    """Whether a table recovery moves: fed what recovery has read at each check, it says
    when no offset has moved for `timeout_s` while recovery lasted."""

    timeout_s: float
    _last: Mapping[tuple[str, int], int] | None = field(default=None, repr=False)
    _since: float = 0.0

    def observe(
        self, now: float, recovering: bool, lags: tuple[ChangelogLag, ...]
    ) -> RecoveryStalled | None:
        """The stall, if recovery (`recovering`, with `lags` left to read) has not moved for
        the timeout by `now` (monotonic seconds); None while it moves or is over."""
        if not recovering:
            self._last = None
            return None
        offsets = {(lag.topic, lag.partition): lag.have for lag in lags}
        if offsets != self._last:  # started, moved, or a partition finished
            self._last, self._since = offsets, now
            return None
        if now - self._since < self.timeout_s:
            return None
        return RecoveryStalled(now - self._since, lags)


def recovery_lags(app: faust.App) -> tuple[bool, tuple[ChangelogLag, ...]]:
    """Whether the app's tables are being recovered, and what each changelog partition
    still to read has and needs."""
    tables: Any = app.tables  # the TableManager; its recovery is not on the interface
    recovery = tables.recovery
    stats = recovery.active_stats() if recovery.in_recovery else {}
    lags = tuple(
        sorted(ChangelogLag(tp.topic, tp.partition, s.offset, s.highwater)
               for tp, s in stats.items())
    )  # fmt: skip
    return bool(recovery.in_recovery), lags


def fetch_state(app: faust.App) -> dict[str, Any]:
    """What the consumer fetches and holds back, and what waits in the queues between it and
    the tables and agents: the clues to why recovery reads nothing (for the stall's log)."""
    consumer: Any = app.consumer
    tables: Any = app.tables

    def named(tps: Any) -> list[str]:
        return sorted(f"{tp.topic}[{tp.partition}]" for tp in tps or ())

    try:
        return {
            "fetching": named(consumer._active_partitions),
            "paused": named(consumer._paused_partitions),
            "held_for_full_buffer": named(consumer._buffered_partitions),
            "flow_active": bool(consumer.flow_active),
            "consumer_flags": sorted(map(str, consumer.diag.flags)),
            "changelog_queue": tables.changelog_queue.qsize(),
            "stream_queues": {
                str(topic): topic.queue.qsize()
                for topic in app.topics
                if getattr(topic, "_queue", None) is not None
            },
        }
    except Exception as exc:  # a clue missing must not keep the worker from stopping
        return {"fetch_state_unavailable": repr(exc)}


async def fetch_positions(app: faust.App, lags: tuple[ChangelogLag, ...]) -> dict[str, Any]:
    """Where the consumer would fetch each stuck changelog partition next: at its end while
    recovery has read nothing means its records were fetched and lost on the way."""
    consumer: Any = app.consumer
    found: dict[str, Any] = {}
    for lag in lags:
        try:
            position = await asyncio.wait_for(consumer.position(TP(lag.topic, lag.partition)), 5)
        except Exception as exc:  # a clue missing must not keep the worker from stopping
            position = repr(exc)
        found[f"{lag.topic}[{lag.partition}]"] = position
    return found


class RecoveryWatch(Service):
    """Stops the worker when its table recovery makes no progress (see the module's text).

    A service of the app's own, started with it: Faust starts the app's tasks and timers
    only once its tables are recovered, too late to watch the first recovery."""

    def __init__(self, app: faust.App, timeout_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.progress = RecoveryProgress(timeout_s)
        self.stalled: RecoveryStalled | None = None
        """Set once recovery is found stalled; the worker is stopping."""

    @Service.task
    async def _check(self) -> None:
        while not self.should_stop:
            await self.sleep(RECOVERY_CHECK_EVERY_S)
            try:
                recovering, lags = recovery_lags(self.app)
            except Exception:  # not started yet, or stopping
                continue
            stalled = self.progress.observe(time.monotonic(), recovering, lags)
            if stalled is not None:
                await self._stop_worker(stalled)
                return

    async def _stop_worker(self, stalled: RecoveryStalled) -> None:
        self.stalled = stalled
        log.error(
            "table_recovery_stuck",
            stuck_s=round(stalled.stalled_s, 1),
            partitions=[str(lag) for lag in stalled.lags],
            error=str(stalled),
            fetch_positions=await fetch_positions(self.app, stalled.lags),
            **fetch_state(self.app),
        )
        await asyncio.sleep(CRASH_GRACE_S)  # /ready says 503 with the reason meanwhile
        await self.app.crash(stalled)


def stop_when_recovery_stalls(app: faust.App, timeout_s: float) -> RecoveryWatch:
    """Watch the app's table recovery from its start (call before it starts); the worker
    stops when recovery has made no progress for `timeout_s`."""
    watch = RecoveryWatch(app, timeout_s)
    app.add_dependency(watch)
    return watch


def stalled_recovery(app: faust.App) -> RecoveryStalled | None:
    """The stall the app's RecoveryWatch found, if it found one (the worker is stopping)."""
    children: Any = getattr(app, "_children", ())  # mode keeps a service's dependencies there
    for child in children:
        if isinstance(child, RecoveryWatch) and child.stalled is not None:
            return child.stalled
    return None


def why_the_worker_stops(app: faust.App) -> GembaError | None:
    """A dead agent or a stalled table recovery, whichever is found first; None if neither."""
    return dead_agent(app) or stalled_recovery(app)
