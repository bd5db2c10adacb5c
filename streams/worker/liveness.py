"""An agent that dies takes the worker down: `/ready` says which agent and why, and the
process exits non-zero, so that a supervisor (systemd, Kubernetes, Compose) restarts it.

Faust's default agent supervisor logs a crash and starts a new actor on the same stream,
past the message the old one died on. That message is never acked, so nothing of its
partition is committed again: the partition's work stops while the worker looks healthy
(seen: a dead letter too large to send killed the fold agent; `/ready` said 200 for good).
A restarted process starts from the last commit and meets the message again, which is
what at-least-once needs; a fault that repeats shows as a crash loop, not as silence.
"""

from __future__ import annotations

import asyncio

import faust
import structlog
from mode import OneForOneSupervisor
from mode.types import ServiceT

from streams.errors import GembaError

__all__ = ["AgentDied", "StopWorkerOnCrash", "dead_agent", "stop_when_an_agent_dies"]

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
