"""Whether this worker reaches the Kafka cluster: asked once a second, kept for /metrics.

The worker's Kafka clients ride out a broker outage by themselves and say so in the log
(each kind of warning once per 30 s, see streams/logs.py). This watch makes the outage a
figure as well: once a second a client of its own (same servers and credentials as the
worker's) asks the cluster for the metadata of the worker's topics, and the answer, or
its absence within PROBE_TIMEOUT_S, is folded into `BrokerReachability`: reachable now,
how many outages, and how long the cluster has not answered in all. The change each way
is logged once: `broker_unreachable` (warning) and `broker_reachable_again`.

The watch starts with the worker's other tasks, once its tables are recovered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import faust
import structlog
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth, server_list

__all__ = ["PROBE_EVERY_S", "BrokerReachability", "BrokerState", "attach_broker_watch"]

log = structlog.get_logger("gemba.worker")
PROBE_EVERY_S = 1.0
PROBE_TIMEOUT_S = 10.0
"""A refused connection fails at once; this bounds a broker that accepts and never answers
(generous: a worker folding a large batch answers its own sockets late)."""
KAFKA_PORT = 9092


@dataclass(frozen=True)
class BrokerState:
    """What /metrics reports of the cluster's reachability at one moment."""

    reachable: bool
    outages: int
    unreachable_s: float


@dataclass
class BrokerReachability:
    """The probes' outcomes folded together (times are monotonic seconds).

    An outage begins with the first unanswered probe (also the very first one, for a
    worker that starts while the cluster is away) and ends with the next answered one.
    """

    reachable: bool | None = None
    """The last probe's outcome; None before the first."""
    outages: int = 0
    _down_since: float | None = None
    _down_before_s: float = 0.0

    def observe(self, reachable: bool, now: float) -> bool:
        """Record one probe's outcome at `now`; True if reachability changed with it."""
        if reachable is self.reachable:
            return False
        if not reachable:
            self.outages += 1
            self._down_since = now
        elif self._down_since is not None:
            self._down_before_s += now - self._down_since
            self._down_since = None
        self.reachable = reachable
        return True

    def outage_s(self, now: float) -> float:
        """Seconds the outage under way has lasted (0 when there is none)."""
        return now - self._down_since if self._down_since is not None else 0.0

    def unreachable_s(self, now: float) -> float:
        """Seconds without an answer in all, the outage under way included."""
        return self._down_before_s + self.outage_s(now)

    def state(self, now: float) -> BrokerState | None:
        """The figures at `now`; None before the first probe."""
        if self.reachable is None:
            return None
        return BrokerState(self.reachable, self.outages, self.unreachable_s(now))


class _Probe:
    """A metadata request for the worker's topics, from a client of its own."""

    def __init__(self, options: dict[str, Any], topics: list[str]) -> None:
        self.options = options
        self.topics = topics
        self.client: AIOKafkaClient | None = None

    async def unanswered(self) -> str | None:
        """None if the cluster answered within PROBE_TIMEOUT_S, else why it did not."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                if self.client is None:
                    self.client = await self._bootstrapped()
                if await self.client.force_metadata_update():
                    return None
                return "no broker answered a metadata request"
        except TimeoutError:
            return f"no answer within {PROBE_TIMEOUT_S:.0f} s"
        except (KafkaError, OSError) as exc:
            return repr(exc)
        except Exception as exc:  # the client's surprises must not end the watch
            await self.close()
            return repr(exc)

    async def _bootstrapped(self) -> AIOKafkaClient:
        client = AIOKafkaClient(client_id="gemba-broker-watch", **self.options)
        try:
            await client.bootstrap()
        except BaseException:
            await client.close()
            raise
        client.set_topics(self.topics)
        return client

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


def _probe_for(app: faust.App, topics: list[str]) -> _Probe:
    conf = app.conf
    options: dict[str, Any] = {
        "bootstrap_servers": server_list(conf.broker, KAFKA_PORT),
        **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
    }
    return _Probe(options, topics)


async def _watch(app: faust.App, topics: list[str], reachability: BrokerReachability) -> None:
    probe = _probe_for(app, topics)
    try:
        while True:
            reason = await probe.unanswered()
            now = time.monotonic()
            outage_s = reachability.outage_s(now)
            if reachability.observe(reason is None, now):
                if reason is not None:
                    log.warning("broker_unreachable", reason=reason, outages=reachability.outages)
                elif reachability.outages:
                    log.info("broker_reachable_again", unreachable_s=round(outage_s, 1))
            await asyncio.sleep(PROBE_EVERY_S)
    finally:
        await probe.close()


def attach_broker_watch(app: faust.App, topics: list[str]) -> BrokerReachability:
    """Probe the cluster once a second while the worker runs, asking for the metadata of
    `topics` (the worker's source topic); the reachability returned keeps the outcomes."""
    reachability = BrokerReachability()

    @app.task  # type: ignore[untyped-decorator]
    async def watch_broker() -> None:
        await _watch(app, topics, reachability)

    return reachability
