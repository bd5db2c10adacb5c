"""The worker's parts are handed to one another as it is built, not kept on the Faust app."""

from __future__ import annotations

from pathlib import Path

from projections.policy.model import default_policy
from streams.settings import Settings
from streams.worker.app import build_worker, create_app
from streams.worker.campaigns import AccountForwarder
from streams.worker.value_streams import ValueStreamFolder


def test_the_faust_app_carries_none_of_the_workers_parts(tmp_path: Path) -> None:
    app = create_app(Settings(state_dir=tmp_path))

    assert [name for name in vars(app) if name.startswith("gemba_")] == []


def test_every_part_plugs_into_the_pipeline_and_folds_with_its_policy(tmp_path: Path) -> None:
    folder = ValueStreamFolder(default_policy())

    worker = build_worker(Settings(state_dir=tmp_path), folder)

    assert worker.pipeline.folder is folder
    assert worker.pipeline.observers == [worker.alerts]
    assert worker.alerts.pipeline is worker.pipeline
    assert worker.alerts.policy is folder.policy
    assert worker.campaigns.policy is folder.policy
    assert [type(listener) for listener in worker.pipeline.fact_listeners] == [AccountForwarder]
    assert worker.history is not None
    assert worker.history.writer.policy is folder.policy


def test_a_worker_without_the_history_sink_has_none(tmp_path: Path) -> None:
    worker = build_worker(Settings(state_dir=tmp_path, history_sink=False))

    assert worker.history is None
    assert "archive-events" not in worker.app.agents
