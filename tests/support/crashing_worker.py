"""`gemba worker` with one more agent, which raises on a message of `touches` keyed DEATH_KEY.

A real agent crash in a real worker process, for tests of what a crash must do
(tests/integration/test_liveness.py); run as `python -m tests.support.crashing_worker`.
Until such a message comes, the worker is the real one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import faust

from streams.logs import configure_logging
from streams.settings import Settings
from streams.worker.app import create_app
from streams.worker.run import run_worker

CRASHING_AGENT = "crash-on-death-key"
CRASH_MESSAGE = "this agent dies on purpose"
DEATH_KEY = b"die-now"


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    touches = app.topic(
        settings.touches_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
        value_serializer="raw",
    )  # fmt: skip

    @app.agent(touches, name=CRASHING_AGENT)
    async def crash_on_death_key(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async for key, _ in stream.items():
            if key == DEATH_KEY:
                raise RuntimeError(CRASH_MESSAGE)
            yield None

    run_worker(settings, app)


if __name__ == "__main__":
    main()
