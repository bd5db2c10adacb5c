"""A table recovery that makes no progress stops the worker, against the real broker: it
names the stuck changelog partitions and offsets in an ERROR line, `/ready` answers 503 with
the reason, and the process exits non-zero so that its supervisor restarts it.

The real worker folds a few deals (its tables' changelogs fill), and stops; the same app
starts again with a consumer that never fetches the changelogs
(tests/support/stalled_recovery_worker.py), so its recovery waits for good.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from streams.settings import Settings
from streams.simulator import SimulationConfig, history_records
from tests.support.worker_harness import WorkerProcess, WorkerSetup, publish

pytestmark = pytest.mark.integration

STALL_S = 5
"""GEMBA_RECOVERY_STALL_TIMEOUT_S for the stalled worker (180 s by default)."""


@dataclass(frozen=True)
class Stall:
    ready_answers: list[tuple[float, int, Any]]
    """(seconds since start, status, body) of /ready until the process was gone."""
    exit_code: int | None
    log: list[dict[str, Any]]
    tail: str


def _answers_until_exit(worker: WorkerProcess, timeout_s: float) -> list[tuple[float, int, Any]]:
    answers, began = [], time.monotonic()
    while worker.alive and time.monotonic() - began < timeout_s:
        answer = worker.readiness()
        if answer is not None:
            answers.append((time.monotonic() - began, *answer))
        time.sleep(0.1)
    return answers


@pytest.fixture(scope="module")
def stall(kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stall]:
    state: Path = tmp_path_factory.mktemp("recovery-stall")
    setup = replace(WorkerSetup.fresh(kafka_settings, state / "gemba"), partitions=2)
    setup.create_touches_topic()
    touches = [(r.key.encode(), r.line) for r in history_records(SimulationConfig(seed=5, deals=3))]
    publish(setup.bootstrap_servers, setup.touches_topic, touches)
    first = WorkerProcess(setup, state / "first.log")
    stalled = WorkerProcess(
        replace(setup, extra_env=(("GEMBA_RECOVERY_STALL_TIMEOUT_S", str(STALL_S)),)),
        state / "stalled.log",
        module=("tests.support.stalled_recovery_worker",),
    )
    try:
        first.start()
        first.wait_until_consumed(len(touches), timeout_s=60)
        first.stop()
        stalled.start()
        answers = _answers_until_exit(stalled, timeout_s=STALL_S + 60)
        exit_code = stalled.wait_for_exit(timeout_s=30)
    finally:
        first.stop()
        stalled.stop()
    yield Stall(answers, exit_code, stalled.log_events(), stalled.tail())


def _stuck_lines(stall: Stall) -> list[dict[str, Any]]:
    return [e for e in stall.log if e.get("event") == "table_recovery_stuck"]


def test_a_worker_whose_recovery_stalls_says_so_naming_the_changelog_partitions(
    stall: Stall,
) -> None:
    [line] = _stuck_lines(stall)

    assert line["level"] == "error"
    assert line["stuck_s"] >= STALL_S
    assert line["partitions"], line
    assert all("-changelog[" in p and " at offset " in p for p in line["partitions"]), line


def test_the_stall_line_says_what_the_consumer_fetches_and_holds_back(stall: Stall) -> None:
    [line] = _stuck_lines(stall)
    stuck = {p.split(" at offset ")[0] for p in line["partitions"]}

    assert stuck <= set(line["paused"]), line  # this worker's consumer never resumes them
    assert not stuck & set(line["fetching"]), line
    assert "changelog_queue" in line and "stream_queues" in line
    assert set(line["fetch_positions"]) == stuck, line
    assert all(isinstance(p, int) and p >= 0 for p in line["fetch_positions"].values()), line


def test_its_ready_page_says_503_with_the_reason_before_it_exits_non_zero(stall: Stall) -> None:
    reasons = [str(body) for _, status, body in stall.ready_answers if status == 503]

    assert stall.exit_code not in {0, None}, stall.tail
    assert any("table recovery made no progress" in r and "-changelog[" in r for r in reasons), (
        stall.ready_answers[-3:]
    )
    assert all(status != 200 for _, status, _ in stall.ready_answers)
