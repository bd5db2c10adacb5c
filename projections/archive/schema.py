"""The archive's tables and views: the log, offsets, fold facts, value streams, and SQL views."""

from __future__ import annotations

from typing import Any

from projections.archive.facts import FACTS_DDL
from projections.deal.totals import Totals

__all__ = [
    "ARCHIVE_VIEWS",
    "COUNT_FIELDS",
    "DAY",
    "MINUTE",
    "MINUTE_US",
    "PROCESS_WASTES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "TIME_FIELDS",
    "UTC_MONTH",
    "VIEWS",
    "WAIT_WASTES",
    "totals_value",
]

TIME_FIELDS: tuple[tuple[str, str], ...] = (
    ("lead_time", "lead_time"),
    ("value_added", "value_added"),
    ("necessary_non_value_added", "necessary_non_value_added"),
    ("waste_rework", "waste.rework"),
    ("waste_chasing", "waste.chasing"),
    ("waste_no_show", "waste.no_show"),
    ("waste_over_processing", "waste.over_processing"),
    ("waste_overproduction", "waste.overproduction"),
    ("wait", "wait"),
    ("waiting_on_us", "waiting_on_us"),
    ("inventory", "inventory"),
)
"""Totals' times as columns (`<name>_us`, exact microseconds), with their Totals path."""

COUNT_FIELDS: tuple[tuple[str, str], ...] = (
    ("deals", "deals"),
    ("rework", "rework"),
    ("touches_call", "touches.call"),
    ("touches_email", "touches.email"),
    ("touches_meeting", "touches.meeting"),
    ("touches_quote", "touches.quote"),
)
PROCESS_WASTES = ("rework", "chasing", "no_show", "over_processing", "overproduction")
"""Wastes of process time: their minutes are touches' time (vs_deals.waste_<name>_us)."""
WAIT_WASTES = ("waiting_on_us", "inventory")
"""Wastes measured as wait: waiting-on-us and the time deals sit stalled (vs_deals.<name>_us)."""
_TOTALS_DDL = ", ".join(
    [f"{name}_us BIGINT NOT NULL" for name, _ in TIME_FIELDS]
    + [f"{name} INTEGER NOT NULL" for name, _ in COUNT_FIELDS]
)


def totals_value(totals: Totals, path: str) -> Any:
    """The figure of `totals` at a dotted path of TIME_FIELDS or COUNT_FIELDS."""
    value: Any = totals
    for part in path.split("."):
        value = getattr(value, part)
    return value


SCHEMA_VERSION = 3
"""Bumped whenever a table or view changes (version 2 added the fold facts that `gemba replay`
reads; version 3 stores the tables as Parquet segments and a catalog: projections.archive.store;
an older archive, one DuckDB file, is converted on first open)."""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS archive_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    event_id VARCHAR PRIMARY KEY, type VARCHAR NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL, recorded_at TIMESTAMPTZ NOT NULL,
    deal_id VARCHAR, account_id VARCHAR NOT NULL, actor_id VARCHAR, campaign_id VARCHAR,
    payload JSON NOT NULL,
    source_topic VARCHAR NOT NULL, source_partition INTEGER NOT NULL,
    source_offset BIGINT NOT NULL, previous_event_id VARCHAR, chain_hash VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS offsets (
    topic VARCHAR NOT NULL, source_partition INTEGER NOT NULL, next_offset BIGINT NOT NULL,
    chain_length BIGINT, head_event_id VARCHAR, head_hash VARCHAR,
    PRIMARY KEY (topic, source_partition));
CREATE TABLE IF NOT EXISTS dirty_deals (deal_id VARCHAR PRIMARY KEY);
CREATE TABLE IF NOT EXISTS offset_gaps (
    topic VARCHAR NOT NULL, source_partition INTEGER NOT NULL,
    first_offset BIGINT NOT NULL, last_offset BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS duplicates (
    topic VARCHAR NOT NULL, source_partition INTEGER NOT NULL, source_offset BIGINT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL, event_id VARCHAR NOT NULL, identical BOOLEAN NOT NULL,
    PRIMARY KEY (topic, source_partition, source_offset));
CREATE TABLE IF NOT EXISTS dead_letters (
    source_topic VARCHAR NOT NULL, source_partition INTEGER NOT NULL,
    source_offset BIGINT NOT NULL, reason VARCHAR, key BLOB, value BLOB,
    recorded_at TIMESTAMPTZ NOT NULL, dlq_partition INTEGER NOT NULL, dlq_offset BIGINT NOT NULL,
    PRIMARY KEY (source_topic, source_partition, source_offset));
CREATE TABLE IF NOT EXISTS alerts (
    alert_id VARCHAR PRIMARY KEY, kind VARCHAR, deal_id VARCHAR, stage VARCHAR,
    occurred_at TIMESTAMPTZ, recorded_at TIMESTAMPTZ NOT NULL, payload JSON NOT NULL,
    source_partition INTEGER NOT NULL, source_offset BIGINT NOT NULL);
{FACTS_DDL}
CREATE TABLE IF NOT EXISTS vs_deals (
    deal_id VARCHAR NOT NULL, policy_version VARCHAR NOT NULL, status VARCHAR NOT NULL,
    stage VARCHAR NOT NULL, owner_id VARCHAR NOT NULL, segment VARCHAR, product VARCHAR,
    amount DECIMAL(18, 2), currency VARCHAR NOT NULL, opened_at TIMESTAMPTZ NOT NULL,
    closed_at TIMESTAMPTZ, as_of TIMESTAMPTZ NOT NULL, silent_since TIMESTAMPTZ NOT NULL,
    stall_threshold_us BIGINT, stall_episodes INTEGER NOT NULL,
    last_value_added_at TIMESTAMPTZ, {_TOTALS_DDL}, value_stream JSON NOT NULL);
CREATE TABLE IF NOT EXISTS vs_stages (
    deal_id VARCHAR NOT NULL, stage VARCHAR NOT NULL, stage_rank INTEGER,
    visits INTEGER NOT NULL, first_entered_at TIMESTAMPTZ NOT NULL, {_TOTALS_DDL});
CREATE TABLE IF NOT EXISTS vs_visits (
    deal_id VARCHAR NOT NULL, visit INTEGER NOT NULL, stage VARCHAR NOT NULL,
    entered_at TIMESTAMPTZ NOT NULL, left_at TIMESTAMPTZ, regression BOOLEAN NOT NULL,
    event_id VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS vs_touches (
    deal_id VARCHAR NOT NULL, event_id VARCHAR NOT NULL, kind VARCHAR NOT NULL,
    direction VARCHAR NOT NULL, started_at TIMESTAMPTZ NOT NULL, ended_at TIMESTAMPTZ NOT NULL,
    process_us BIGINT NOT NULL, stage VARCHAR NOT NULL, touch_class VARCHAR, waste VARCHAR,
    rule INTEGER NOT NULL, outcome VARCHAR, meeting_kind VARCHAR);
CREATE TABLE IF NOT EXISTS vs_stalls (
    deal_id VARCHAR NOT NULL, stage VARCHAR NOT NULL, started_at TIMESTAMPTZ NOT NULL,
    ended_at TIMESTAMPTZ, threshold_us BIGINT NOT NULL);
"""

MINUTE = "6e7"
"""Microseconds in a minute, as SQL: `<column>_us / MINUTE` is minutes."""
DAY = "8.64e10"
"""Microseconds in a day, as SQL."""
MINUTE_US = 60_000_000
"""Microseconds in a minute, as a number (the dashboard's queries divide by it)."""


def _minutes(expression: str, alias: str) -> str:
    return f"({expression}) / {MINUTE} AS {alias}_min"


def _sum_columns() -> str:
    times = [_minutes(f"sum({name}_us)", name) for name, _ in TIME_FIELDS]
    waste = " + ".join(f"sum(waste_{name}_us)" for name in PROCESS_WASTES)
    counts = [f"sum({name}) AS {name}" for name, _ in COUNT_FIELDS]
    pce = "sum(value_added_us) / nullif(sum(lead_time_us), 0) AS pce"
    return ", ".join([*times, _minutes(waste, "waste"), *counts, pce])


def _row_columns(prefix: str = "") -> str:
    times = [_minutes(f"{prefix}{name}_us", name) for name, _ in TIME_FIELDS]
    waste = " + ".join(f"{prefix}waste_{name}_us" for name in PROCESS_WASTES)
    counts = [f"{prefix}{name} AS {name}" for name, _ in COUNT_FIELDS if name != "deals"]
    pce = f"{prefix}value_added_us / nullif({prefix}lead_time_us, 0) AS pce"
    return ", ".join([*times, _minutes(waste, "waste"), *counts, pce])


_RAW_TOTALS = ", ".join(
    [f"{name}_us" for name, _ in TIME_FIELDS] + [name for name, _ in COUNT_FIELDS]
)
UTC_MONTH = "strftime(timezone('UTC', {0}), '%Y-%m')"
"""The UTC month (YYYY-MM) of a time column, for `.format(column)`."""

VIEWS: dict[str, str] = {
    "deal_campaigns": """
        SELECT DISTINCT deal_id, campaign_id FROM events
        WHERE deal_id IS NOT NULL AND campaign_id IS NOT NULL""",
    "deal_value_streams": f"""
        SELECT deal_id, status, stage, owner_id, segment, product, amount, currency,
               opened_at, closed_at, as_of, policy_version, {_row_columns()},
               touches_call + touches_email + touches_meeting + touches_quote AS touches,
               stall_episodes, value_stream
        FROM vs_deals""",
    "touches": f"""
        SELECT t.deal_id, t.event_id, t.kind, t.direction, t.stage, t.touch_class, t.waste,
               t.rule, t.outcome, t.meeting_kind, t.started_at, t.ended_at,
               t.process_us / {MINUTE} AS minutes, d.owner_id, d.segment, d.product
        FROM vs_touches t JOIN vs_deals d USING (deal_id)""",
    "stage_intervals": f"""
        SELECT v.deal_id, v.visit, v.stage, v.entered_at, v.left_at,
               (epoch_us(coalesce(v.left_at, d.as_of)) - epoch_us(v.entered_at)) / {MINUTE}
                   AS minutes,
               v.regression, v.event_id, d.status, d.owner_id, d.segment, d.product
        FROM vs_visits v JOIN vs_deals d USING (deal_id)""",
    "value_stream_by": f"""
        WITH deals AS (
            SELECT *, {UTC_MONTH.format("opened_at")} AS opened_month FROM vs_deals),
        buckets AS (
            SELECT 'owner' AS dimension, owner_id AS value, opened_month AS month, {_RAW_TOTALS}
                FROM deals
            UNION ALL SELECT 'segment', coalesce(segment, '-'), opened_month, {_RAW_TOTALS}
                FROM deals
            UNION ALL SELECT 'product', coalesce(product, '-'), opened_month, {_RAW_TOTALS}
                FROM deals
            UNION ALL SELECT 'campaign', c.campaign_id, opened_month, {_RAW_TOTALS}
                FROM deals JOIN deal_campaigns c USING (deal_id)
            UNION ALL SELECT 'stage', stage, {UTC_MONTH.format("first_entered_at")},
                {_RAW_TOTALS} FROM vs_stages)
        SELECT dimension, value, month, {_sum_columns()}
        FROM buckets GROUP BY dimension, value, month""",
    "pce_by": f"""
        WITH deals AS (
            SELECT *, {UTC_MONTH.format("opened_at")} AS opened_month FROM vs_deals),
        buckets AS (
            SELECT 'all' AS dimension, 'all' AS value, {_RAW_TOTALS} FROM deals
            UNION ALL SELECT 'owner', owner_id, {_RAW_TOTALS} FROM deals
            UNION ALL SELECT 'segment', coalesce(segment, '-'), {_RAW_TOTALS} FROM deals
            UNION ALL SELECT 'product', coalesce(product, '-'), {_RAW_TOTALS} FROM deals
            UNION ALL SELECT 'month', opened_month, {_RAW_TOTALS} FROM deals
            UNION ALL SELECT 'campaign', c.campaign_id, {_RAW_TOTALS}
                FROM deals JOIN deal_campaigns c USING (deal_id)
            UNION ALL SELECT 'stage', stage, {_RAW_TOTALS} FROM vs_stages)
        SELECT dimension, value, {_sum_columns()} FROM buckets GROUP BY dimension, value""",
    "lead_time_percentiles": f"""
        SELECT status, count(*) AS deals, avg(lead_time_us) / {DAY} AS mean_days,
               quantile_cont(lead_time_us, 0.5) / {DAY} AS p50_days,
               quantile_cont(lead_time_us, 0.8) / {DAY} AS p80_days,
               quantile_cont(lead_time_us, 0.95) / {DAY} AS p95_days,
               min(lead_time_us) / {DAY} AS min_days, max(lead_time_us) / {DAY} AS max_days
        FROM vs_deals WHERE closed_at IS NOT NULL GROUP BY status""",
    "lead_time_distribution": """
        WITH weeks AS (
            SELECT status, lead_time_us // 604800000000 AS week FROM vs_deals
            WHERE closed_at IS NOT NULL)
        SELECT status, week * 7 AS from_days, week * 7 + 7 AS to_days, count(*) AS deals,
               count(*) / sum(count(*)) OVER (PARTITION BY status) AS share
        FROM weeks GROUP BY status, week""",
    "waste_pareto": f"""
        WITH lost AS (
            {
        " UNION ALL ".join(
            f"SELECT '{name}' AS category, 'process time' AS measured_as, "
            f"sum(waste_{name}_us) AS us, count(*) FILTER (WHERE waste_{name}_us > 0) AS deals,"
            f" (SELECT count(*) FROM vs_touches WHERE waste = '{name}') AS touches "
            "FROM vs_deals"
            for name in PROCESS_WASTES
        )
    }
            {
        "".join(
            f" UNION ALL SELECT '{name}', 'wait', sum({name}_us), "
            f"count(*) FILTER (WHERE {name}_us > 0), 0 FROM vs_deals"
            for name in WAIT_WASTES
        )
    })
        SELECT row_number() OVER (ORDER BY us DESC, category) AS rank, category, measured_as,
               us / {MINUTE} AS minutes, deals, touches,
               us / nullif(sum(us) OVER (), 0) AS share,
               sum(us) OVER (ORDER BY us DESC, category ROWS UNBOUNDED PRECEDING)
                   / nullif(sum(us) OVER (), 0) AS cumulative_share
        FROM lost""",
    "flow_days": """
        WITH bounds AS (
            SELECT CAST(timezone('UTC', min(opened_at)) AS DATE) AS first_day,
                   CAST(timezone('UTC', max(coalesce(closed_at, as_of))) AS DATE) AS last_day
            FROM vs_deals)
        SELECT CAST(unnest(generate_series(first_day, last_day, INTERVAL 1 DAY)) AS DATE) AS day
        FROM bounds WHERE first_day IS NOT NULL""",
    "cumulative_flow": """
        WITH positions AS (
            SELECT deal_id, stage, timezone('UTC', entered_at) AS since,
                   timezone('UTC', left_at) AS until FROM vs_visits
            UNION ALL SELECT deal_id, stage, timezone('UTC', closed_at), NULL
                FROM vs_deals WHERE closed_at IS NOT NULL)
        SELECT d.day, p.stage, count(*) AS deals
        FROM flow_days d JOIN positions p
          ON p.since <= d.day + INTERVAL 1 DAY
         AND (p.until IS NULL OR p.until > d.day + INTERVAL 1 DAY)
        GROUP BY d.day, p.stage""",
    "flow_by_month": f"""
        WITH wip AS (
            SELECT d.day, count(p.deal_id) AS open_deals
            FROM flow_days d LEFT JOIN vs_deals p
              ON timezone('UTC', p.opened_at) <= d.day + INTERVAL 1 DAY
             AND (p.closed_at IS NULL OR timezone('UTC', p.closed_at) > d.day + INTERVAL 1 DAY)
            GROUP BY d.day),
        monthly AS (
            SELECT strftime(day, '%Y-%m') AS month, count(*) AS days, avg(open_deals) AS avg_wip
            FROM wip GROUP BY 1),
        closed AS (
            SELECT {UTC_MONTH.format("closed_at")} AS month, count(*) AS closed,
                   count(*) FILTER (WHERE status = 'won') AS won,
                   count(*) FILTER (WHERE status = 'lost') AS lost,
                   avg(lead_time_us) / {DAY} AS avg_lead_time_days
            FROM vs_deals WHERE closed_at IS NOT NULL GROUP BY 1)
        SELECT month, days, coalesce(closed, 0) AS closed, coalesce(won, 0) AS won,
               coalesce(lost, 0) AS lost, coalesce(closed, 0) / days AS throughput_per_day,
               avg_wip, avg_lead_time_days,
               coalesce(closed, 0) / days * avg_lead_time_days AS littles_law_wip,
               avg_wip / nullif(coalesce(closed, 0) / days * avg_lead_time_days, 0)
                   AS littles_law_ratio
        FROM monthly LEFT JOIN closed USING (month)""",
    "stalled_deals": f"""
        WITH now AS (SELECT max(occurred_at) AS watermark FROM events)
        SELECT d.deal_id, d.owner_id, d.segment, d.stage, d.silent_since,
               (epoch_us(n.watermark) - epoch_us(d.silent_since)) / {DAY} AS silent_days,
               d.stall_threshold_us / {DAY} AS threshold_days, d.last_value_added_at,
               n.watermark AS as_of
        FROM vs_deals d, now n
        WHERE d.status = 'open' AND d.stall_threshold_us IS NOT NULL
          AND epoch_us(n.watermark) - epoch_us(d.silent_since) > d.stall_threshold_us""",
}
ARCHIVE_VIEWS = tuple(VIEWS)
"""Views a user can query directly (tables: events, alerts, dead_letters, duplicates, ...)."""
