"""Markup and control characters in events, through `gemba produce`, the real worker, and
`gemba deal` / `gemba rollups` as a user runs them: printed literally, never a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from events.codec import encode
from streams.settings import Settings
from tests.support.deal_builders import DealScript, march
from tests.support.terminal_checks import assert_literal
from tests.support.worker_harness import WorkerSetup, running_worker, wait_for

pytestmark = pytest.mark.integration

DEAL = "deal-untrusted"
STAGE = "[/x] Qualify \x1b[2J\x1b]8;;http://x\x1b\\ \u202eevil"
SEGMENT = "[bold]SMB\x07\x00 :smile:"
BAD_FIELD = "[/x]\x1b[31m\u202e"


def gemba(setup: WorkerSetup, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={**setup.env(), "COLUMNS": "400"},
    )  # fmt: skip


def test_event_text_passes_produce_the_worker_deal_and_rollups_literally(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    setup = WorkerSetup.fresh(kafka_settings, tmp_path / "gemba")
    setup.create_touches_topic()
    script = DealScript(deal_id=DEAL).opened(march(2, 9), stage=STAGE, segment=SEGMENT)
    script.call(march(3, 9), 20)
    lines = [encode(event) for event in script.events]
    bad = {**orjson.loads(lines[1]), "event_id": "bad-1", BAD_FIELD: "[bold]"}
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([*lines, orjson.dumps(bad)]) + b"\n")

    produced = gemba(setup, "produce", str(path))

    assert produced.returncode == 1, produced.stderr
    assert "Traceback" not in produced.stderr
    assert "published 2 event(s)" in produced.stdout
    assert_literal(produced.stderr, [f"line 3: {BAD_FIELD}: Extra inputs are not permitted"])
    with running_worker(setup, tmp_path / "worker.log") as worker:
        worker.wait_until_consumed(2, timeout_s=60)
        wait_for(lambda: worker.get(f"/gemba/deals/{DEAL}/"), timeout_s=30)
        deal = gemba(setup, "deal", DEAL)
        as_json = gemba(setup, "deal", DEAL, "--json")
        rollups = gemba(setup, "rollups", "segment")

    assert deal.returncode == 0, deal.stderr
    assert_literal(deal.stdout, [STAGE])
    assert as_json.returncode == 0, as_json.stderr
    assert orjson.loads(as_json.stdout)["stage_history"][0]["stage"] == STAGE
    assert_literal(as_json.stdout, [])
    assert rollups.returncode == 0, rollups.stderr
    assert_literal(rollups.stdout, [SEGMENT])
