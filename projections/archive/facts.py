"""The fold facts: the typed fields of every archived deal event, which the SQL replay reads."""

from __future__ import annotations

from projections.archive.connection import Connection

__all__ = ["FACTS_DDL", "FACTS_SELECT", "fill_facts"]

FACTS_DDL = """
CREATE TABLE IF NOT EXISTS deal_numbers (deal_id VARCHAR PRIMARY KEY, deal_no INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS fold_facts (
    event_id VARCHAR PRIMARY KEY, deal_no INTEGER NOT NULL, type VARCHAR NOT NULL,
    occurred_us BIGINT NOT NULL, recorded_us BIGINT NOT NULL,
    direction VARCHAR, outcome VARCHAR, kind VARCHAR, duration_s BIGINT,
    started_us BIGINT, ended_us BIGINT, replies BOOLEAN, version INTEGER, requested BOOLEAN,
    stage VARCHAR, owner_id VARCHAR, segment VARCHAR, product VARCHAR,
    amount VARCHAR, currency VARCHAR);
"""
"""The typed fields of every deal event the fold reads, derived from its payload when it
is archived, so that a replay parses no JSON; deals are numbered so that it sorts and joins
integers. `gemba audit verify` checks that they still agree with the payloads."""

FACTS_SELECT = """
SELECT e.event_id, n.deal_no, e.type, epoch_us(e.occurred_at), epoch_us(e.recorded_at),
       e.payload->>'direction', e.payload->>'outcome',
       CASE WHEN e.type = 'meeting' THEN e.payload->>'kind' END,
       CAST(e.payload->>'duration_seconds' AS BIGINT),
       epoch_us(CAST(e.payload->>'started_at' AS TIMESTAMPTZ)),
       epoch_us(CAST(e.payload->>'ended_at' AS TIMESTAMPTZ)),
       CAST(e.payload->>'replies_to_customer' AS BOOLEAN),
       CAST(e.payload->>'version' AS INTEGER),
       CAST(e.payload->>'requested_by_customer' AS BOOLEAN),
       CASE e.type WHEN 'deal_opened' THEN e.payload->>'stage'
                   WHEN 'stage_changed' THEN e.payload->>'to_stage' END,
       e.payload->>'owner_id', e.payload->>'segment', e.payload->>'product',
       CASE WHEN e.type IN ('deal_opened', 'deal_won') THEN e.payload->>'amount' END,
       CASE WHEN e.type IN ('deal_opened', 'deal_won') THEN e.payload->>'currency' END
FROM events e JOIN deal_numbers n USING (deal_id)"""


def fill_facts(connection: Connection, only: str | None = None) -> None:
    """Derive the `fold_facts` rows of archived deal events: of those whose event_id is in
    the registered relation `only` (one column, event_id), or (None) of every deal event
    that has none yet. New deals are numbered first."""
    if only:
        chosen = f"e.event_id IN (SELECT event_id FROM {only})"
    else:
        chosen = "e.event_id NOT IN (SELECT event_id FROM fold_facts)"
    connection.execute(
        f"""INSERT INTO deal_numbers
        SELECT deal_id, (SELECT coalesce(max(deal_no), 0) FROM deal_numbers)
                        + row_number() OVER (ORDER BY deal_id)
        FROM (SELECT DISTINCT e.deal_id FROM events e
              WHERE e.deal_id IS NOT NULL AND {chosen}
                AND e.deal_id NOT IN (SELECT deal_id FROM deal_numbers))"""
    )
    connection.execute(f"INSERT INTO fold_facts {FACTS_SELECT} WHERE {chosen}")
