"""An agent that dies stops the worker and makes it unready, saying which agent and why."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faust
import pytest

from streams.settings import Settings
from streams.worker.app import create_app
from streams.worker.liveness import AgentDied, StopWorkerOnCrash
from streams.worker.metrics import readiness


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return create_app(Settings(state_dir=tmp_path))


def test_every_agent_of_the_worker_app_is_supervised_to_stop_the_worker(app: Any) -> None:
    assert app.conf.agent_supervisor is StopWorkerOnCrash


def test_an_agent_that_raises_crashes_the_app_and_makes_it_unready_naming_it(app: Any) -> None:
    @app.agent(app.channel(), name="dies-on-first-message")
    async def dies(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for _ in stream:
            raise ValueError("the first message kills me")
        yield None

    async def feed_one_message() -> None:
        async with dies.test_context(supervisor_strategy=app.conf.agent_supervisor) as agent:
            with pytest.raises(ValueError):  # the test wrapper hands the crash to its caller
                await agent.put(b"anything")
            for _ in range(100):  # the supervisor acts on its own task
                if app.crashed:
                    return
                await asyncio.sleep(0.05)

    asyncio.run(feed_one_message())

    assert app.crashed
    assert isinstance(app.crash_reason, AgentDied)
    ready, reason = readiness(app)
    assert not ready
    assert "dies-on-first-message" in reason
    assert "ValueError: the first message kills me" in reason
