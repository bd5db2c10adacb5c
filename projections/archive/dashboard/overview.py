"""The archive as a whole, as every view states it: its time, policy versions, position, and
the values each filter can take."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from projections.archive.connection import Connection
from projections.archive.dashboard.filters import column_values
from projections.archive.schema import UTC_MONTH

__all__ = ["ArchiveStamp", "FilterOptions", "archive_position", "archive_stamp", "filter_options"]


@dataclass(frozen=True, slots=True)
class ArchiveStamp:
    """What every view states with its figures: the archive's event time and policy versions."""

    as_of: datetime | None
    policy_versions: tuple[str, ...]
    deals: int
    deals_to_refresh: int


def archive_stamp(connection: Connection) -> ArchiveStamp:
    """The latest event time, the policy versions of the value streams, and how many deals."""
    as_of, deals, dirty = connection.execute(
        "SELECT (SELECT max(occurred_at) FROM events), (SELECT count(*) FROM vs_deals), "
        "(SELECT count(*) FROM dirty_deals)"
    ).fetchall()[0]
    versions = column_values(connection, "SELECT DISTINCT policy_version FROM vs_deals ORDER BY 1")
    return ArchiveStamp(as_of, tuple(map(str, versions)), int(deals), int(dirty))


def archive_position(connection: Connection) -> tuple[tuple[str, int, int], ...]:
    """Every (topic, partition, next offset) the archive holds: it changes with every batch."""
    rows = connection.execute(
        "SELECT topic, source_partition, next_offset FROM offsets ORDER BY ALL"
    ).fetchall()
    return tuple((str(topic), int(partition), int(offset)) for topic, partition, offset in rows)


@dataclass(frozen=True, slots=True)
class FilterOptions:
    """The values each filter can take, as the archive holds them."""

    months: tuple[str, ...]
    segments: tuple[str, ...]
    owners: tuple[str, ...]
    products: tuple[str, ...]
    campaigns: tuple[str, ...]


def filter_options(connection: Connection) -> FilterOptions:
    """Months (of stage entries and openings), segments, reps, products and campaigns."""
    months = column_values(
        connection,
        f"SELECT DISTINCT {UTC_MONTH.format('first_entered_at')} FROM vs_stages "
        f"UNION SELECT DISTINCT {UTC_MONTH.format('opened_at')} FROM vs_deals ORDER BY 1",
    )

    def distinct(expression: str) -> tuple[str, ...]:
        return tuple(
            map(str, column_values(connection, f"SELECT DISTINCT {expression} ORDER BY 1"))
        )

    return FilterOptions(
        months=tuple(map(str, months)),
        segments=distinct("coalesce(segment, '-') FROM vs_deals"),
        owners=distinct("owner_id FROM vs_deals"),
        products=distinct("coalesce(product, '-') FROM vs_deals"),
        campaigns=distinct(
            "campaign_id FROM events WHERE type = 'campaign_response' AND campaign_id IS NOT NULL"
        ),
    )
