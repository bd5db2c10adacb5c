"""A table recovery that makes no progress for the set time is named, and stops the worker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.settings import Settings
from streams.worker.app import create_app
from streams.worker.liveness import (
    ChangelogLag,
    RecoveryProgress,
    RecoveryStalled,
    RecoveryWatch,
    stalled_recovery,
)
from streams.worker.metrics import readiness

LAG = ChangelogLag("gemba-deal_events-changelog", 3, -1, 1562)
TIMEOUT_S = 180.0


def test_a_recovery_whose_offsets_do_not_move_for_the_timeout_is_stalled_naming_them() -> None:
    progress = RecoveryProgress(TIMEOUT_S)

    assert progress.observe(0.0, True, (LAG,)) is None
    assert progress.observe(TIMEOUT_S - 1, True, (LAG,)) is None
    stalled = progress.observe(TIMEOUT_S, True, (LAG,))

    assert isinstance(stalled, RecoveryStalled)
    assert stalled.lags == (LAG,)
    assert "gemba-deal_events-changelog[3] at offset -1 of 1562" in str(stalled)
    assert "GEMBA_RECOVERY_STALL_TIMEOUT_S" in str(stalled)


def test_a_recovery_that_moves_is_never_stalled_however_long_it_takes() -> None:
    progress = RecoveryProgress(TIMEOUT_S)

    found = [
        progress.observe(t * 60.0, True, (ChangelogLag(LAG.topic, 3, t, 100_000),))
        for t in range(100)
    ]

    assert found == [None] * 100


def test_a_partition_finishing_is_progress_and_restarts_the_clock() -> None:
    progress = RecoveryProgress(TIMEOUT_S)
    other = ChangelogLag(LAG.topic, 4, 10, 20)
    progress.observe(0.0, True, (LAG, other))

    assert progress.observe(TIMEOUT_S - 1, True, (LAG,)) is None  # partition 4 is done
    assert progress.observe(2 * TIMEOUT_S - 2, True, (LAG,)) is None
    assert progress.observe(2 * TIMEOUT_S - 1, True, (LAG,)) is not None


def test_time_out_of_recovery_does_not_count_towards_a_stall() -> None:
    progress = RecoveryProgress(TIMEOUT_S)
    progress.observe(0.0, True, (LAG,))
    progress.observe(10.0, False, ())  # recovered; a later rebalance recovers again

    assert progress.observe(TIMEOUT_S + 5, True, (LAG,)) is None
    assert progress.observe(2 * TIMEOUT_S + 4, True, (LAG,)) is None
    assert progress.observe(2 * TIMEOUT_S + 5, True, (LAG,)) is not None


def test_a_recovery_with_nothing_left_that_does_not_end_is_stalled_too() -> None:
    progress = RecoveryProgress(TIMEOUT_S)
    progress.observe(0.0, True, ())

    stalled = progress.observe(TIMEOUT_S, True, ())

    assert stalled is not None
    assert "no changelog partition left to read, yet recovery did not end" in str(stalled)


@given(st.lists(st.tuples(st.floats(0.0, 50.0), st.integers(-1, 3)), max_size=40))
def test_never_stalled_before_the_timeout_has_passed_since_the_first_check(
    steps: list[tuple[float, int]],
) -> None:
    progress, now = RecoveryProgress(TIMEOUT_S), 0.0
    for gap, have in steps:
        now += gap
        stalled = progress.observe(now, True, (ChangelogLag(LAG.topic, 3, have, 9),))
        assert stalled is None or stalled.stalled_s >= TIMEOUT_S
        assert stalled is None or now >= TIMEOUT_S


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return create_app(Settings(state_dir=tmp_path, recovery_stall_timeout_s=2.0))


def _watch(app: Any) -> RecoveryWatch:
    (watch,) = [child for child in app._children if isinstance(child, RecoveryWatch)]
    return watch


def test_the_worker_app_is_watched_from_its_start_with_the_settings_timeout(app: Any) -> None:
    assert _watch(app).progress.timeout_s == 2.0


def test_a_stalled_recovery_makes_the_worker_unready_with_the_reason_then_crashes_it(
    app: Any,
) -> None:
    watch = _watch(app)
    stalled = RecoveryStalled(181.0, (LAG,))
    seen: list[tuple[bool, str]] = []

    async def stall() -> None:
        stopping = asyncio.ensure_future(watch._stop_worker(stalled))
        await asyncio.sleep(0.1)  # within the grace before the crash
        seen.append(readiness(app))
        await stopping

    asyncio.run(stall())

    assert stalled_recovery(app) is stalled
    assert seen == [(False, str(stalled))]
    assert app.crashed
    assert app.crash_reason is stalled
