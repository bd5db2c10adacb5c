"""The worker's table store and event loop settings, and its local tables across restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import faust
import pytest
from pydantic import ValidationError

from streams.settings import Settings
from streams.worker.app import create_app
from streams.worker.partitioned import store_in_partition
from streams.worker.run import CLEAN_STOP_MARK, new_event_loop, trust_local_tables


def test_the_worker_keeps_its_tables_in_rocksdb_under_its_own_directory_by_default(
    tmp_path: Path,
) -> None:
    settings = Settings(state_dir=tmp_path)
    app = create_app(settings)

    assert settings.worker_store == "rocksdb://"
    assert app.conf.store.scheme == "rocksdb"
    assert Path(app.conf.tabledir).is_relative_to(settings.worker_dir)


def test_an_unknown_store_is_refused_naming_the_setting_and_the_stores_it_takes() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(worker_store="redis://localhost")

    message = str(refused.value)
    assert "worker_store" in message
    assert "rocksdb://" in message and "memory://" in message


def test_a_store_given_without_its_scheme_separator_is_refused() -> None:
    with pytest.raises(ValidationError, match="Faust store URL"):
        Settings(worker_store="rocksdb")


def test_the_worker_loop_setting_picks_the_event_loop(tmp_path: Path) -> None:
    loops = {}
    for name in ("uvloop", "asyncio"):
        loop = new_event_loop(Settings(state_dir=tmp_path, worker_loop=name))
        loops[name] = type(loop).__module__
        loop.close()
    asyncio.set_event_loop(None)

    assert loops["uvloop"].startswith("uvloop")
    assert loops["asyncio"].startswith("asyncio")


def test_tables_left_by_a_clean_stop_are_kept_and_the_mark_taken_away(tmp_path: Path) -> None:
    tables = tmp_path / "tables"
    (tables / "t-0.db").mkdir(parents=True)
    (tables / CLEAN_STOP_MARK).touch()

    assert trust_local_tables(tables) is True
    assert (tables / "t-0.db").is_dir()
    assert not (tables / CLEAN_STOP_MARK).exists()  # a kill from now on is not a clean stop


def test_tables_left_by_a_killed_worker_are_deleted_to_be_rebuilt_from_the_changelogs(
    tmp_path: Path,
) -> None:
    tables = tmp_path / "tables"
    (tables / "t-0.db").mkdir(parents=True)

    assert trust_local_tables(tables) is False
    assert not tables.exists()


def test_no_tables_yet_is_nothing_to_keep(tmp_path: Path) -> None:
    assert trust_local_tables(tmp_path / "tables") is False


def _rocksdb_table(tmp_path: Path) -> faust.Table:
    app = faust.App("store-test", store="rocksdb://", datadir=str(tmp_path))
    table: faust.Table = app.Table("alert-state", value_type=bytes)
    return table


def test_a_row_written_outside_any_event_lands_in_the_partition_given(tmp_path: Path) -> None:
    table = _rocksdb_table(tmp_path)

    store_in_partition(table, 3, "deal-1", b'{"due_at": null}')

    store = table.data
    assert store.get("deal-1") == b'{"due_at": null}'  # read back outside any event too
    assert store._db_for_partition(3).get(store._encode_key("deal-1")) is not None  # type: ignore[attr-defined]
    assert store._db_for_partition(0).get(store._encode_key("deal-1")) is None  # type: ignore[attr-defined]


def test_rocksdb_cannot_place_a_plain_write_outside_an_event(tmp_path: Path) -> None:
    """Why `store_in_partition` exists: the stall-alert clock writes from a timer."""
    table = _rocksdb_table(tmp_path)

    with pytest.raises(AssertionError):
        table.data["deal-1"] = b"{}"


def test_the_memory_store_takes_a_row_outside_any_event_as_well(tmp_path: Path) -> None:
    app = faust.App("store-test", store="memory://", datadir=str(tmp_path))
    table = app.Table("alert-state", value_type=bytes)

    store_in_partition(table, 3, "deal-1", b"{}")

    assert table.data.get("deal-1") == b"{}"
