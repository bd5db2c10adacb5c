"""The fold in SQL (projections.archive.replay_sql) against the fold in Python, deal by deal.

Each test writes events to a real DuckDB archive as the sink writes them, replays it
in SQL and in Python, and compares the content hashes (and, when they differ, the
canonical lines of the first deal that differs, so a failure says where).
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import Event, decode, encode
from events.models import MeetingKind
from projections import default_policy
from projections.archive import (
    SCHEMA_VERSION,
    Tampering,
    archived_events,
    canonical_lines,
    open_archive,
    replay,
    replay_sql,
    sql_replay,
    verify_archive,
)
from projections.archive.conversion import old_archive_backup
from projections.categories import TouchClass, WasteCategory
from projections.policy.model import Policy
from streams.simulator import SimulationConfig, history_lines
from tests.support.archives import RECORDED_AFTER, archive_of, single_file_of, tamper
from tests.support.deal_builders import STAGES, deal_events

TOUCH_WASTES = [
    WasteCategory.REWORK,
    WasteCategory.CHASING,
    WasteCategory.NO_SHOW,
    WasteCategory.OVER_PROCESSING,
    WasteCategory.OVERPRODUCTION,
]
CUSTOMER_KINDS = [kind for kind in MeetingKind if kind is not MeetingKind.INTERNAL]


@pytest.fixture
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="gemba-replay-sql-") as directory:
        yield Path(directory)


def _lines_in_sql(connection: duckdb.DuckDBPyConnection, deal_id: str) -> list[str]:
    rows = connection.execute(
        "SELECT line FROM rp_lines l JOIN deal_numbers n ON n.deal_no = l.dn "
        "WHERE n.deal_id = ? ORDER BY section, k",
        [deal_id],
    ).fetchall()
    return [str(line) for (line,) in rows]


def assert_same_fold(
    connection: duckdb.DuckDBPyConnection, policy: Policy, as_of: datetime | None = None
) -> str:
    """Replay the archive both ways; equal hashes, or the first deal's lines that differ."""
    in_sql = sql_replay(connection, policy, as_of)
    in_python = replay(archived_events(connection), policy, as_of)
    if in_sql.content_hash != in_python.content_hash:
        digests = dict(connection.execute("SELECT deal_id, digest FROM rp_digests").fetchall())
        for deal_id, stream in sorted(in_python.streams.items()):
            expected = canonical_lines(stream)
            if digests.get(deal_id) != replay_sql.deal_digest(stream):
                assert _lines_in_sql(connection, deal_id) == expected, deal_id
        assert sorted(digests) == sorted(in_python.streams)
    assert in_sql.content_hash == in_python.content_hash
    assert in_sql.deals == in_python.deals
    assert in_sql.totals == in_python.totals
    assert (in_sql.events_read, in_sql.events_known) == (
        in_python.events_read,
        in_python.events_known,
    )
    return in_sql.content_hash


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """The default policy with its parameters drawn: precedence, allowances, kinds, stages,
    standard minutes and stall thresholds (per stage and for the SMB segment)."""
    base = default_policy()
    classes = tuple(draw(st.permutations(list(TouchClass))))
    wastes = tuple(draw(st.permutations(TOUCH_WASTES)))
    minutes = {name: draw(st.integers(0, 90)) for name in ("email", "reply", "quote")}
    minutes["quote_revision"] = draw(st.integers(0, 90))
    rules = base.rules.model_copy(
        update={
            "internal_meeting_allowance_per_stage": draw(st.integers(0, 3)),
            "emails_before_chasing": draw(st.integers(0, 3)),
            "value_added_meeting_kinds": tuple(
                sorted(draw(st.sets(st.sampled_from(CUSTOMER_KINDS))))
            ),
            "rework_when_repeated": tuple(sorted(draw(st.sets(st.sampled_from(MeetingKind))))),
            "overproduction_stages": tuple(
                sorted(draw(st.sets(st.sampled_from(list(base.stages.order)))))
            ),
        }
    )
    days = st.floats(0.01, 20, allow_nan=False)
    thresholds = {stage: draw(days) for stage in base.stages.order}
    segments = {"SMB": {stage: draw(days) for stage in draw(st.sets(st.sampled_from(STAGES[:5])))}}
    return base.model_copy(
        update={
            "merge": base.merge.model_copy(update={"classes": classes, "wastes": wastes}),
            "standard_minutes": base.standard_minutes.model_copy(update=minutes),
            "rules": rules,
            "stall": base.stall.model_copy(
                update={"threshold_days": thresholds, "segments": segments}
            ),
        }
    )


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """A few deals' events (ids unique across deals), in a drawn arrival order."""
    events: list[Event] = []
    for number in range(draw(st.integers(1, 4))):
        events += draw(deal_events(deal_id=f"deal-{number}", max_facts=30))
    draw(st.randoms(use_true_random=False)).shuffle(events)
    return events


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), policies(), st.data())
def test_the_sql_fold_equals_the_python_fold(
    events: list[Event], policy: Policy, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory(prefix="gemba-replay-sql-") as directory:
        path = archive_of(Path(directory) / "archive.duckdb", [encode(e) for e in events])
        connection = open_archive(path, read_only=True)
        try:
            assert_same_fold(connection, policy)
            times = sorted(e.occurred_at for e in events)
            as_of = data.draw(st.sampled_from(times)) + data.draw(
                st.sampled_from([timedelta(0), RECORDED_AFTER, -timedelta(seconds=1)])
            )
            assert_same_fold(connection, policy, as_of.astimezone(UTC))
        finally:
            connection.close()


@pytest.fixture(scope="module")
def simulated() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="gemba-replay-sql-") as directory:
        lines = list(history_lines(SimulationConfig(seed=11, deals=400)))
        yield archive_of(Path(directory) / "archive.duckdb", lines)


def test_a_simulated_history_folds_the_same_in_sql_at_every_month_end(simulated: Path) -> None:
    connection = open_archive(simulated, read_only=True)
    try:
        hashes = {assert_same_fold(connection, default_policy())}
        for month in (6, 8, 10):
            hashes.add(
                assert_same_fold(connection, default_policy(), datetime(2026, month, 1, tzinfo=UTC))
            )
        assert len(hashes) == 4
    finally:
        connection.close()


def test_the_packed_sweep_and_the_plain_one_agree(
    simulated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = open_archive(simulated, read_only=True)
    try:
        packed = sql_replay(connection, default_policy()).content_hash
        monkeypatch.setattr(replay_sql, "MAX_PACKED", 0)  # every deal "too big" to pack
        assert sql_replay(connection, default_policy()).content_hash == packed
    finally:
        connection.close()


def test_an_archive_file_from_before_the_fold_facts_is_converted_on_first_open_and_gets_them(
    scratch: Path,
) -> None:
    lines = list(history_lines(SimulationConfig(seed=5, deals=60)))
    segmented = archive_of(scratch / "segmented", lines)
    reader = open_archive(segmented, read_only=True)
    try:
        expected = assert_same_fold(reader, default_policy())
    finally:
        reader.close()
    path = single_file_of(segmented, scratch / "archive.duckdb", version=1)
    with duckdb.connect(str(path)) as old:  # as version 1 wrote it
        old.execute("DROP TABLE fold_facts; DROP TABLE deal_numbers")

    reader = open_archive(path, read_only=True)  # converted first, the old file kept
    assert path.is_dir() and old_archive_backup(path).is_file()
    try:
        assert reader.execute("SELECT max(version) FROM archive_schema").fetchone() == (
            SCHEMA_VERSION,
        )
        facts = reader.execute("SELECT count(*) FROM fold_facts").fetchone()
        deal_events = reader.execute(
            "SELECT count(*) FROM events WHERE deal_id IS NOT NULL"
        ).fetchone()
        assert facts == deal_events
        assert assert_same_fold(reader, default_policy()) == expected
        assert verify_archive(reader).intact
    finally:
        reader.close()


def test_audit_verify_names_fold_facts_that_no_longer_match_their_payload(scratch: Path) -> None:
    lines = list(history_lines(SimulationConfig(seed=5, deals=40)))
    path = archive_of(scratch / "archive.duckdb", lines)
    calls = [decode(line) for line in lines if b'"type":"call"' in line]
    changed, removed = random.Random(3).sample([c.event_id for c in calls], 2)
    tamper(
        path,
        f"UPDATE fold_facts SET duration_s = duration_s + 600 WHERE event_id = '{changed}'",
        f"DELETE FROM fold_facts WHERE event_id = '{removed}'",
    )

    reader = open_archive(path, read_only=True)
    try:
        findings = {(f.kind, f.event_id) for f in verify_archive(reader).findings}
    finally:
        reader.close()

    assert findings == {(Tampering.CHANGED, changed), (Tampering.REMOVED, removed)}
