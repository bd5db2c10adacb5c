"""`gemba worker` whose consumer never fetches its tables' changelogs: a table recovery that
makes no progress, for tests of what a stall must do (tests/integration/test_recovery_stall.py);
run as `python -m tests.support.stalled_recovery_worker`.

Everything else is the real worker: Faust's recovery asks the consumer to resume the
changelog partitions it must read, and this consumer keeps them paused, so recovery waits
for records that never come, as the survivor of tests/integration/test_scale_out.py once did.
A worker with empty changelogs has nothing to recover and runs normally.
"""

from __future__ import annotations

from collections.abc import Iterable

from faust.types import TP

from streams.logs import configure_logging
from streams.settings import Settings
from streams.worker.app import create_app
from streams.worker.rebalance import RebalanceSafeConsumer
from streams.worker.run import run_worker


class NeverFetchesChangelogs(RebalanceSafeConsumer):
    """The worker's consumer, deaf to requests to fetch changelog partitions."""

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        super().resume_partitions([tp for tp in tps if not self._is_changelog_tp(tp)])


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    app.transport.Consumer = NeverFetchesChangelogs  # type: ignore[misc]
    run_worker(settings, app)


if __name__ == "__main__":
    main()
