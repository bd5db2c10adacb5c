"""Replay in DuckDB: the whole value-stream fold as set-based SQL over the archive.

`projections.deal.value_stream.deal_value_stream` folds one deal at a time in Python;
`sql_replay` computes the same value streams for every deal at once, in DuckDB, from
the archive's `fold_facts` table (`projections.archive.facts`). Both must give the
same projections for the same events and policy: `canonical_lines`
(`projections.archive.canonical`) writes a value stream as the lines its content hash
is taken over, and the SQL writes the very same lines, so the two hashes are equal
exactly when the two folds agree on every deal, stage, visit, touch and stall (tests
compare them on simulated and generated histories). The statements, one function per
DOMAIN rule, are in `projections.archive.fold_sql`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from projections.archive.canonical import TOUCH_KINDS, canonical_lines, deal_digest, streams_hash
from projections.archive.connection import Connection
from projections.archive.fold_sql.lines import TOTAL_COLUMNS, hash_statements
from projections.archive.fold_sql.merge import MAX_PACKED
from projections.archive.fold_sql.steps import fold_statements
from projections.deal.totals import Totals
from projections.policy.model import Policy

__all__ = [
    "MAX_PACKED",
    "SqlReplay",
    "canonical_lines",
    "deal_digest",
    "sql_replay",
    "streams_hash",
]


@dataclass(frozen=True)
class SqlReplay:
    """Every deal's value stream rebuilt in DuckDB; tables `{prefix}out`, `{prefix}stages`,
    `{prefix}visits`, `{prefix}touches`, `{prefix}stalls` stay in the connection."""

    policy_version: str
    as_of: datetime | None
    events_read: int
    events_known: int
    deals: int
    deals_by_status: dict[str, int]
    totals: Totals
    content_hash: str
    prefix: str


def sql_replay(
    connection: Connection,
    policy: Policy,
    as_of: datetime | None = None,
    *,
    prefix: str = "rp_",
) -> SqlReplay:
    """Fold every archived deal in DuckDB under `policy`, as known at `as_of` (None: all).

    Works on a read-only connection (the tables it builds are temporary); an archive
    written before the fold facts existed got them when it was converted.

    Python twin: projections.deal.value_stream.deal_value_stream (one deal at a time).
    """
    if as_of is not None and as_of.utcoffset() is None:
        raise ValueError("as_of must be timezone-aware, like event times")
    steps = fold_statements(policy, as_of, prefix, packed=True)
    for statement in steps[:-2]:
        connection.execute(statement)
    most = connection.execute(f"SELECT coalesce(max(touches), 0) FROM {prefix}deals").fetchall()
    if most[0][0] >= MAX_PACKED:
        steps = fold_statements(policy, as_of, prefix, packed=False)
    for statement in steps[-2:] + hash_statements(policy, prefix):
        connection.execute(statement)
    digests = connection.execute(
        f"SELECT deal_id, digest FROM {prefix}digests ORDER BY deal_id"
    ).fetchall()
    known = "true" if as_of is None else "occurred_at <= $a AND recorded_at <= $a"
    read, known_count = connection.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {known}) FROM events",
        {"a": as_of} if as_of else {},
    ).fetchall()[0]
    statuses = dict(
        connection.execute(
            f"SELECT status, count(*) FROM {prefix}out GROUP BY status ORDER BY status"
        ).fetchall()
    )
    return SqlReplay(
        policy_version=policy.version,
        as_of=as_of,
        events_read=int(read),
        events_known=int(known_count),
        deals=sum(statuses.values()),
        deals_by_status={str(k): int(v) for k, v in statuses.items()},
        totals=_totals_of(connection, prefix),
        content_hash=streams_hash((str(d), str(h)) for d, h in digests),
        prefix=prefix,
    )


def _totals_of(connection: Connection, prefix: str) -> Totals:
    row = connection.execute(
        f"SELECT count(*), {', '.join(f'coalesce(sum({c}), 0)' for c in TOTAL_COLUMNS)} "
        f"FROM {prefix}out"
    ).fetchall()[0]
    deals, *values = (int(v) for v in row)
    named = dict(zip(TOTAL_COLUMNS, values, strict=True))
    us = {k: timedelta(microseconds=v) for k, v in named.items() if k.endswith("_us")}
    return Totals.model_validate(
        {
            "deals": deals,
            "lead_time": us["lead_time_us"],
            "value_added": us["value_added_us"],
            "necessary_non_value_added": us["necessary_non_value_added_us"],
            "waste": {
                str(w): us[f"w_{w}_us"]
                for w in ("rework", "chasing", "no_show", "over_processing", "overproduction")
            },
            "wait": us["wait_us"],
            "waiting_on_us": us["waiting_on_us_us"],
            "inventory": us["inventory_us"],
            "rework": named["rework"],
            "touches": {k: named[f"n_{k}"] for k in TOUCH_KINDS},
        }
    )
