"""Replay in DuckDB: the whole value-stream fold as set-based SQL over the archive.

`projections.deal.value_stream.deal_value_stream` folds one deal at a time in Python;
this module computes the same value streams for every deal at once, in DuckDB,
from the archive's `fold_facts` table (the typed fields of each deal event, derived
from its payload when it is archived). Both must give the same projections for the
same events and policy: `canonical_lines` writes a value stream as the lines its
content hash is taken over, and the SQL writes the very same lines, so the two
hashes are equal exactly when the two folds agree on every deal, stage, visit,
touch and stall (tests compare them on simulated and generated histories).

How the fold becomes SQL (each step a handful of window functions over all deals):

- deals: the first deal_opened and the first close by (event time, event id); the
  watermark is the deal's latest known event; the life runs from the open to the
  close, or to the watermark;
- stage visits: the changes in order, those after the close dropped, a change to the
  stage the deal is already in skipped (the stage before it is its `lag`);
- touches: each touch's span (its own, or the policy's standard minutes), kept if it
  meets the life and clipped to it; its visit is the latest one entered by its start;
- the touch rules: the running state of DOMAIN.md rules 1-7 (emails in a row since
  the last two-way contact, internal meetings per stage, held meetings per kind) as
  running counts in the order (start, event id);
- the ball in our court (rule 5) and stall episodes, from running counts of
  answers and the gaps between value-added touches within each visit;
- the precedence merge: every boundary of a touch, ball span, stall episode or
  visit is a point; between consecutive points each class's running count says
  which class holds that stretch (the first in the policy's precedence), and the
  stretch's length goes to it, to its stage, and to waiting-on-us or inventory.

Times are microseconds since the epoch throughout: exact, like the Python fold's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb

from projections.categories import TouchClass, WasteCategory
from projections.deal.totals import Totals
from projections.deal.value_stream import DealValueStream
from projections.intervals import MICROSECOND, epoch_us
from projections.policy.model import Policy

__all__ = [
    "FACTS_DDL",
    "SqlReplay",
    "canonical_lines",
    "deal_digest",
    "fill_facts",
    "sql_replay",
    "streams_hash",
]

SEP = "\x1f"
"""Between the fields of a canonical line (ids and names never hold it)."""

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


def fill_facts(connection: duckdb.DuckDBPyConnection, only: str | None = None) -> None:
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


# --- the canonical lines, from a folded value stream -----------------------------------------


def _us(moment: datetime | None) -> str:
    return "" if moment is None else str(epoch_us(moment))


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _totals(totals: Totals) -> list[str]:
    times = [
        totals.lead_time,
        totals.value_added,
        totals.necessary_non_value_added,
        totals.waste.rework,
        totals.waste.chasing,
        totals.waste.no_show,
        totals.waste.over_processing,
        totals.waste.overproduction,
        totals.wait,
        totals.waiting_on_us,
        totals.inventory,
    ]
    counts = [totals.rework, *(getattr(totals.touches, k) for k in TOUCH_KINDS)]
    return [str(time // MICROSECOND) for time in times] + [str(count) for count in counts]


TOUCH_KINDS = ("call", "email", "meeting", "quote")


def _amount(amount: Decimal | None) -> str:
    return "" if amount is None else str(amount)


def canonical_lines(stream: DealValueStream) -> list[str]:
    """A value stream as the lines its content hash covers: the deal, its stages, visits,
    touches and stalls, in the fold's order; times in microseconds since the epoch."""
    deal = [
        "D",
        stream.deal_id,
        stream.policy_version,
        str(stream.status),
        stream.stage,
        stream.owner_id,
        _text(stream.segment),
        _text(stream.product),
        _amount(stream.amount),
        stream.currency,
        _us(stream.opened_at),
        _us(stream.closed_at),
        _us(stream.as_of),
        _text(stream.last_value_added_id),
        _us(stream.last_value_added_at),
        *_totals(stream.totals),
    ]
    lines = [SEP.join(deal)]
    lines += [SEP.join(["S", s.stage, str(s.visits), *_totals(s.totals)]) for s in stream.stages]
    lines += [
        SEP.join(
            ["V", v.stage, _us(v.entered_at), _us(v.left_at), str(int(v.regression)), v.event_id]
        )
        for v in stream.stage_history
    ]
    lines += [
        SEP.join(
            [
                "T",
                t.event_id,
                _us(t.started_at),
                _us(t.ended_at),
                t.stage,
                _text(t.touch_class),
                _text(t.waste),
                str(t.rule),
            ]
        )
        for t in stream.touches
    ]
    lines += [
        SEP.join(
            ["X", x.stage, _us(x.started_at), _us(x.ended_at), str(x.threshold // MICROSECOND)]
        )
        for x in stream.stalls
    ]
    return lines


def deal_digest(stream: DealValueStream) -> str:
    """sha256 of one deal's canonical lines."""
    return hashlib.sha256("\n".join(canonical_lines(stream)).encode()).hexdigest()


def streams_hash(digests: Iterable[tuple[str, str]]) -> str:
    """The content hash of many deals from (deal_id, digest) pairs, in any order."""
    text = "".join(f"{deal_id}{SEP}{digest}\n" for deal_id, digest in sorted(digests))
    return hashlib.sha256(text.encode()).hexdigest()


# --- the fold in SQL --------------------------------------------------------------------------


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _in(values: Iterable[str]) -> str:
    listed = [_q(str(v)) for v in values]
    return "(" + ", ".join(listed) + ")" if listed else "(NULL)"


def _values(rows: Sequence[tuple[Any, ...]], columns: str, types: Sequence[str]) -> str:
    """A VALUES relation (typed; one row of NULLs filtered out when there are none)."""
    if not rows:
        nulls = ", ".join(f"CAST(NULL AS {t})" for t in types)
        return f"(SELECT * FROM (VALUES ({nulls})) AS v({columns}) WHERE false)"
    body = ", ".join(
        "(" + ", ".join(_literal(v, t) for v, t in zip(row, types, strict=True)) + ")"
        for row in rows
    )
    return f"(SELECT * FROM (VALUES {body}) AS v({columns}))"


def _literal(value: Any, kind: str) -> str:
    if value is None:
        return f"CAST(NULL AS {kind})"
    return _q(value) if kind == "VARCHAR" else f"CAST({int(value)} AS {kind})"


@dataclass(frozen=True)
class _Parameters:
    """The policy as SQL literals and small relations."""

    policy: Policy

    def minutes(self, name: str) -> int:
        return int(getattr(self.policy.standard_minutes, name)) * 60_000_000

    @property
    def ranks(self) -> str:
        rows = [(stage, rank) for rank, stage in enumerate(self.policy.stages.order)]
        return _values(rows, "stage, stage_rank", ("VARCHAR", "INTEGER"))

    @property
    def thresholds(self) -> str:
        stall = self.policy.stall
        defaults = [(None, stage, _days_us(days)) for stage, days in stall.threshold_days.items()]
        overrides = [
            (segment, stage, _days_us(days))
            for segment, stages in stall.segments.items()
            for stage, days in stages.items()
        ]
        return _values(
            defaults + overrides, "segment, stage, threshold_us", ("VARCHAR", "VARCHAR", "BIGINT")
        )

    @property
    def labels(self) -> list[tuple[str, str, str | None]]:
        """(label, class, waste) in merge precedence; the label is a column-name suffix."""
        labels: list[tuple[str, str, str | None]] = []
        for touch_class in self.policy.merge.classes:
            if touch_class is TouchClass.WASTE:
                labels += [(f"w_{w}", str(touch_class), str(w)) for w in self.policy.merge.wastes]
            else:
                labels.append((str(touch_class), str(touch_class), None))
        return labels


def _days_us(days: float) -> int:
    return timedelta(days=days) // MICROSECOND


def _known(as_of: datetime | None) -> str:
    if as_of is None:
        return "true"
    us = epoch_us(as_of)
    return f"occurred_us <= {us} AND recorded_us <= {us}"


VA = str(TouchClass.VALUE_ADDED)
NNVA = str(TouchClass.NECESSARY_NON_VALUE_ADDED)
WASTE = str(TouchClass.WASTE)


def _steps(policy: Policy, as_of: datetime | None, p: str, *, packed: bool) -> list[str]:
    """The fold as SQL statements creating temporary tables named `{p}...`.

    Deals are numbered (`dn`) and every deal event gets its place in the fold's order,
    (deal, start, event id), as one integer (`ord`): the window functions after that
    partition and sort by integers only. The last two statements are the merge and the
    totals; `packed` sweeps with the classes' counts packed into one integer (exact while
    no deal has MAX_PACKED touches or more).
    """
    par = _Parameters(policy)
    rules = policy.rules
    repeated = [str(kind) for kind in rules.rework_when_repeated]
    held_same = " ".join(
        f"WHEN {_q(kind)} THEN count(*) FILTER (WHERE ty = 6 AND ok AND kind = {_q(kind)}) OVER w"
        for kind in repeated
    )
    held_same_sql = f"CASE kind {held_same} END" if repeated else "CAST(NULL AS BIGINT)"
    labels = par.labels
    wait = len(labels)
    label_of = " ".join(
        f"WHEN touch_class = {_q(c)} AND waste IS NOT DISTINCT FROM {_q(w) if w else 'NULL'} "
        f"THEN {i}"
        for i, (_, c, w) in enumerate(labels)
    )
    by_label = ", ".join(
        f"coalesce(sum(len) FILTER (WHERE label = {i}), 0) AS {name}_us"
        for i, (name, _, _) in enumerate(labels)
    )
    allowance = rules.internal_meeting_allowance_per_stage
    chasing_after = rules.emails_before_chasing
    w = {category.name: _q(str(category)) for category in WasteCategory}
    return [
        f"""CREATE OR REPLACE TEMP VIEW {p}dealnos AS
        SELECT deal_id, deal_no AS dn FROM deal_numbers""",
        # Known deal events, typed as small codes, each with its place in the fold's order
        # (narrow: the window functions below carry every column they are given).
        f"""CREATE OR REPLACE TEMP TABLE {p}known AS
        SELECT f.deal_no AS dn, f.event_id,
               CAST(CASE f.type WHEN 'deal_opened' THEN 0 WHEN 'stage_changed' THEN 1
                    WHEN 'deal_won' THEN 2 WHEN 'deal_lost' THEN 3 WHEN 'call' THEN 4
                    WHEN 'email' THEN 5 WHEN 'meeting' THEN 6 WHEN 'quote' THEN 7 ELSE 9 END
                    AS TINYINT) AS ty,
               f.occurred_us AS t,
               CASE WHEN f.type = 'meeting' THEN f.started_us ELSE f.occurred_us END AS s,
               CASE f.type
                   WHEN 'call' THEN f.occurred_us + f.duration_s * 1000000
                   WHEN 'meeting' THEN f.ended_us
                   WHEN 'email' THEN f.occurred_us + CASE
                       WHEN f.direction = 'inbound' THEN 0
                       WHEN f.replies THEN {par.minutes("reply")}
                       ELSE {par.minutes("email")} END
                   WHEN 'quote' THEN f.occurred_us + CASE WHEN f.version = 1
                       THEN {par.minutes("quote")} ELSE {par.minutes("quote_revision")} END
               END AS e,
               coalesce(f.direction = 'inbound', false) AS inbound,
               coalesce(f.outcome IN ('connected', 'held'), false) AS ok,
               f.kind, coalesce(f.replies, false) AS replies,
               coalesce(f.version = 1 OR f.requested, false) AS first_or_asked,
               row_number() OVER (ORDER BY f.deal_no, s, f.event_id) AS ord
        FROM fold_facts f WHERE {_known(as_of)}""",
        f"""CREATE OR REPLACE TEMP TABLE {p}facts AS
        SELECT k.dn, k.ord, k.ty, k.t, k.event_id, f.stage, f.owner_id, f.segment, f.product,
               f.amount, f.currency
        FROM {p}known k JOIN fold_facts f USING (event_id) WHERE k.ty <= 3""",
        # Deals: the open, the close, the life.
        f"""CREATE OR REPLACE TEMP TABLE {p}deals AS
        WITH g AS (
            SELECT dn,
                   arg_min({{'t': t, 'id': event_id, 'stage': stage, 'owner_id': owner_id,
                             'segment': segment, 'product': product, 'amount': amount,
                             'currency': currency}}, ord) FILTER (WHERE ty = 0) AS o,
                   arg_min({{'t': t, 'won': ty = 2, 'amount': amount, 'currency': currency}},
                           ord) FILTER (WHERE ty IN (2, 3)) AS c
            FROM {p}facts GROUP BY dn),
        latest AS (
            SELECT dn, max(t) AS as_of, count(*) FILTER (WHERE ty BETWEEN 4 AND 7) AS touches
            FROM {p}known GROUP BY dn)
        SELECT n.deal_id, g.dn, latest.as_of, latest.touches, o.t AS ls,
               CASE WHEN c IS NULL THEN as_of ELSE greatest(c.t, o.t) END AS le,
               CASE WHEN c IS NULL THEN 'open' WHEN c.won THEN 'won' ELSE 'lost' END AS status,
               o.id AS opened_id, o.stage AS opened_stage, o.owner_id, o.segment, o.product,
               CASE WHEN c.won THEN c.amount ELSE o.amount END AS amount,
               CASE WHEN c.won THEN c.currency ELSE o.currency END AS currency
        FROM g JOIN latest USING (dn) JOIN {p}dealnos n USING (dn) WHERE o IS NOT NULL""",
        # Stage visits.
        f"""CREATE OR REPLACE TEMP TABLE {p}visits AS
        WITH seq AS (
            SELECT dn, CAST(-1 AS BIGINT) AS ord, ls AS at, opened_stage AS stage,
                   opened_id AS event_id, le, status
            FROM {p}deals
            UNION ALL
            SELECT k.dn, k.ord, greatest(k.t, d.ls), k.stage, k.event_id, d.le, d.status
            FROM {p}facts k JOIN {p}deals d USING (dn)
            WHERE k.ty = 1 AND greatest(k.t, d.ls) <= d.le),
        lagged AS (SELECT *, lag(stage) OVER (PARTITION BY dn ORDER BY ord) AS before FROM seq),
        kept AS (SELECT * FROM lagged WHERE ord = -1 OR stage <> before)
        SELECT k.dn, CAST(row_number() OVER w - 1 AS INTEGER) AS visit, k.stage,
               k.at AS entered,
               coalesce(lead(k.at) OVER w, CASE WHEN k.status = 'open' THEN NULL ELSE k.le END)
                   AS left_at,
               coalesce(k.ord >= 0 AND r.stage_rank < b.stage_rank, false) AS regression,
               k.event_id, k.le, k.status,
               (row_number() OVER w - 1) * 4294967296
                   + dense_rank() OVER (ORDER BY k.stage) * 2
                   + CAST(coalesce(k.stage IN {_in(rules.overproduction_stages)}, false)
                          AS INTEGER) AS vcode
        FROM kept k
        LEFT JOIN {par.ranks} r ON r.stage = k.stage
        LEFT JOIN {par.ranks} b ON b.stage = k.before
        WINDOW w AS (PARTITION BY k.dn ORDER BY k.ord)""",
        # Touches that meet the life, clipped to it.
        f"""CREATE OR REPLACE TEMP TABLE {p}spans AS
        SELECT k.dn, k.ord, k.event_id, k.ty, k.inbound, k.ok, k.kind, k.replies,
               k.first_or_asked, k.s, greatest(k.s, d.ls) AS cs,
               greatest(greatest(k.s, d.ls), least(k.e, d.le)) AS ce, d.ls
        FROM {p}known k JOIN {p}deals d USING (dn)
        WHERE k.ty BETWEEN 4 AND 7
          AND CASE WHEN k.e > k.s THEN k.s < d.le AND k.e > d.ls
                   ELSE d.ls <= k.s AND k.s < d.le END""",
        # The touch rules' running state, and each touch's visit (the latest entered by
        # its start): visit entries and touches in one order.
        f"""CREATE OR REPLACE TEMP TABLE {p}state AS
        SELECT * EXCLUDE (typ, vcode, top), CAST(top >> 32 AS INTEGER) AS vno,
               (top >> 1) & 2147483647 AS scode, (top & 1) = 1 AS overproduction
        FROM (
            SELECT *, max(vcode) OVER w AS top,
                   count(*) FILTER (WHERE (ty = 6 AND ok AND kind <> 'internal')
                                       OR (ty = 4 AND ok) OR (ty = 5 AND inbound)) OVER w
                       AS grp,
                   {held_same_sql} AS held_same
            FROM (
                SELECT dn, entered AS cs, 0 AS typ, CAST(NULL AS BIGINT) AS ord, vcode,
                       CAST(NULL AS TINYINT) AS ty,
                       NULL AS inbound, NULL AS ok, CAST(NULL AS VARCHAR) AS kind,
                       NULL AS replies, NULL AS first_or_asked, CAST(NULL AS BIGINT) AS s,
                       CAST(NULL AS BIGINT) AS ce, CAST(NULL AS BIGINT) AS ls
                FROM {p}visits
                UNION ALL
                SELECT dn, cs, 1, ord, NULL, ty, inbound, ok, kind, replies,
                       first_or_asked, s, ce, ls
                FROM {p}spans)
            WINDOW w AS (PARTITION BY dn ORDER BY cs, typ, ord ROWS UNBOUNDED PRECEDING))
        WHERE typ = 1""",
        # The touch rules (DOMAIN.md 1-7), first match wins.
        f"""CREATE OR REPLACE TEMP TABLE {p}touches AS
        WITH staged AS (
            SELECT *, count(*) OVER (PARTITION BY dn, grp ORDER BY ord ROWS UNBOUNDED PRECEDING)
                       AS n
            FROM {p}state WHERE ty = 5 AND NOT inbound AND NOT replies
            UNION ALL
            SELECT *, count(*) OVER (PARTITION BY dn, scode ORDER BY ord
                                     ROWS UNBOUNDED PRECEDING)
            FROM {p}state WHERE ty = 6 AND ok AND kind = 'internal'
            UNION ALL
            SELECT *, 0 FROM {p}state
            WHERE NOT (ty = 5 AND NOT inbound AND NOT replies)
              AND NOT (ty = 6 AND ok AND kind = 'internal')),
        judged AS (
            SELECT *,
                CASE
                    WHEN ty = 6 AND NOT ok THEN 1
                    WHEN ty = 6 AND kind = 'internal' AND n > {allowance} THEN 2
                    WHEN ty = 6 AND kind = 'internal' THEN 3
                    WHEN ty = 6 AND kind IN {_in(repeated)} AND held_same > 1 THEN 4
                    WHEN ty = 6 AND kind IN {_in(rules.value_added_meeting_kinds)} THEN 5
                    WHEN ty = 6 THEN 6
                    WHEN ty = 4 AND ok THEN 7
                    WHEN ty = 4 THEN 8
                    WHEN ty = 5 AND inbound THEN 9
                    WHEN ty = 5 AND replies THEN 10
                    WHEN ty = 5 AND n > {chasing_after} THEN 11
                    WHEN ty = 5 THEN 12
                    WHEN overproduction THEN 13
                    WHEN first_or_asked THEN 14
                    ELSE 15
                END AS verdict
            FROM staged)
        SELECT dn, ord, ty, cs, ce, ls, vno,
               CASE WHEN verdict IN (5, 7, 10, 14) THEN {_q(VA)}
                    WHEN verdict IN (3, 6, 12) THEN {_q(NNVA)}
                    WHEN verdict = 9 THEN NULL ELSE {_q(WASTE)} END AS touch_class,
               CASE verdict WHEN 1 THEN {w["NO_SHOW"]} WHEN 2 THEN {w["OVER_PROCESSING"]}
                    WHEN 4 THEN {w["REWORK"]} WHEN 8 THEN {w["CHASING"]}
                    WHEN 11 THEN {w["CHASING"]} WHEN 13 THEN {w["OVERPRODUCTION"]}
                    WHEN 15 THEN {w["REWORK"]} END AS waste,
               CASE WHEN verdict = 1 THEN 1 WHEN verdict <= 3 THEN 2 WHEN verdict <= 6 THEN 3
                    WHEN verdict <= 8 THEN 4 WHEN verdict = 9 THEN 5 WHEN verdict <= 12 THEN 6
                    ELSE 7 END AS rule
        FROM judged""",
        # The ball in our court (rule 5): from the first inbound touch after our last
        # move towards the customer until our next one (or the end). Touches in order
        # of their clipped start, then event id.
        f"""CREATE OR REPLACE TEMP TABLE {p}ball AS
        WITH marked AS (
            SELECT dn, cs, ce, inbound, NOT inbound AND NOT (ty = 6 AND kind = 'internal')
                       AS answer,
                   CASE WHEN cs = ls THEN event_id END AS tie, ord
            FROM {p}spans),
        grouped AS (
            SELECT *, count(*) FILTER (WHERE answer) OVER (
                       PARTITION BY dn ORDER BY cs, tie, ord ROWS UNBOUNDED PRECEDING)
                       - CAST(answer AS INTEGER) AS g
            FROM marked),
        spans AS (
            SELECT dn, arg_min(ce, {{'cs': cs, 'tie': tie, 'ord': ord}}) FILTER (WHERE inbound)
                       AS since,
                   max(cs) FILTER (WHERE answer) AS until
            FROM grouped GROUP BY dn, g)
        SELECT s.dn, s.since AS a, coalesce(s.until, d.le) AS b
        FROM spans s JOIN {p}deals d USING (dn)
        WHERE s.since IS NOT NULL AND coalesce(s.until, d.le) > s.since""",
        # Stall episodes: within each visit with a threshold, each gap between the
        # entry, the value-added touch starts and the visit's end longer than it.
        f"""CREATE OR REPLACE TEMP TABLE {p}stalls AS
        WITH limits AS (
            SELECT v.dn, v.visit, v.stage, v.entered, v.left_at, v.le,
                   coalesce(o.threshold_us, t.threshold_us) AS threshold_us
            FROM {p}visits v JOIN {p}deals d USING (dn)
            LEFT JOIN {par.thresholds} o ON o.segment = d.segment AND o.stage = v.stage
            LEFT JOIN {par.thresholds} t ON t.segment IS NULL AND t.stage = v.stage),
        points AS (
            SELECT dn, visit, entered AS p, 0 AS o FROM limits WHERE threshold_us IS NOT NULL
            UNION ALL
            SELECT dn, vno, cs, 1 FROM {p}touches WHERE touch_class = {_q(VA)}
            UNION ALL
            SELECT dn, visit, coalesce(left_at, le), 2 FROM limits
                WHERE threshold_us IS NOT NULL),
        gaps AS (SELECT *, lag(p) OVER (PARTITION BY dn, visit ORDER BY p, o) AS clock FROM points)
        SELECT g.dn, l.visit, l.stage, g.clock + l.threshold_us AS started,
               CASE WHEN g.o = 2 AND l.left_at IS NULL THEN NULL ELSE g.p END AS ended,
               l.threshold_us
        FROM gaps g JOIN limits l USING (dn, visit)
        WHERE g.o > 0 AND l.threshold_us IS NOT NULL AND g.clock + l.threshold_us < g.p""",
        _sweep(p, label_of, len(labels), packed),
        # Totals per stage (all visits of a stage together).
        f"""CREATE OR REPLACE TEMP TABLE {p}stages AS
        WITH per_visit AS (
            SELECT dn, vno AS visit, {by_label},
                   coalesce(sum(len) FILTER (WHERE label = {wait}), 0) AS wait_us,
                   coalesce(sum(len) FILTER (WHERE label = {wait} AND ball), 0)
                       AS waiting_on_us_us,
                   coalesce(sum(len) FILTER (WHERE label = {wait} AND stalled), 0)
                       AS inventory_us
            FROM {p}stretches GROUP BY dn, vno),
        visits AS (
            SELECT v.dn, v.stage, count(*) AS visits, min(v.visit) AS first_visit,
                   sum(coalesce(v.left_at, v.le) - v.entered) AS lead_time_us,
                   sum(CAST(v.regression AS INTEGER)) AS regressions,
                   {", ".join(f"sum(coalesce(x.{n}_us, 0)) AS {n}_us" for n, _, _ in labels)},
                   sum(coalesce(x.wait_us, 0)) AS wait_us,
                   sum(coalesce(x.waiting_on_us_us, 0)) AS waiting_on_us_us,
                   sum(coalesce(x.inventory_us, 0)) AS inventory_us
            FROM {p}visits v LEFT JOIN per_visit x USING (dn, visit)
            GROUP BY v.dn, v.stage),
        by_visit AS (
            SELECT dn, vno AS visit,
                   count(*) FILTER (WHERE waste = {w["REWORK"]}) AS rework_touches,
                   {", ".join(f"count(*) FILTER (WHERE ty = {c}) AS n_{k}" for c, k in TOUCH_CODES)}
            FROM {p}touches GROUP BY dn, vno),
        touched AS (
            SELECT v.dn, v.stage, sum(x.rework_touches) AS rework_touches,
                   {", ".join(f"sum(x.n_{k}) AS n_{k}" for k in TOUCH_KINDS)}
            FROM by_visit x JOIN {p}visits v USING (dn, visit) GROUP BY v.dn, v.stage)
        SELECT v.*, coalesce(r.stage_rank, 1000000000 + v.first_visit) AS position,
               v.regressions + coalesce(t.rework_touches, 0) AS rework,
               {", ".join(f"coalesce(t.n_{k}, 0) AS n_{k}" for k in TOUCH_KINDS)}
        FROM visits v LEFT JOIN touched t USING (dn, stage)
        LEFT JOIN {par.ranks} r ON r.stage = v.stage""",
    ]


TOUCH_CODES = ((4, "call"), (5, "email"), (6, "meeting"), (7, "quote"))
BITS = 9
MAX_PACKED = 1 << BITS
"""Touches of one deal below which the sweep may pack each class's count in BITS bits."""


def _sweep(p: str, label_of: str, labels: int, packed: bool) -> str:
    """The precedence merge: a sweep over every boundary in each deal's life. Between two
    consecutive boundaries, the first class (in precedence) with a touch running holds the
    stretch; with none, it is wait, and waiting-on-us or inventory where those run."""
    wait = labels
    if packed:
        unit = [f"(CAST(1 AS BIGINT) << ({BITS} * label))", "1", "4294967296"]
        count = [f"(cl >> {BITS * i}) & {MAX_PACKED - 1}" for i in range(labels)]
        running = "sum(dl) OVER w AS cl, sum(dw) OVER w AS cw"
        ball, stalled = "(cw & 4294967295) > 0", "(cw >> 32) > 0"
    else:
        unit = ["1", "1", "1"]
        count = [f"c{i}" for i in range(labels)]
        running = ", ".join(
            [f"sum(CASE WHEN label = {i} THEN dl ELSE 0 END) OVER w AS c{i}" for i in range(labels)]
            + [
                "sum(CASE WHEN label = -2 THEN dw ELSE 0 END) OVER w AS cb",
                "sum(CASE WHEN label = -3 THEN dw ELSE 0 END) OVER w AS cx",
            ]
        )
        ball, stalled = "cb > 0", "cx > 0"
    label_unit, ball_unit, stall_unit = unit
    lab = "label, " if not packed else ""
    which = " ".join(f"WHEN {c} > 0 THEN {i}" for i, c in enumerate(count))
    return f"""CREATE OR REPLACE TEMP TABLE {p}stretches AS
        WITH labelled AS (
            SELECT dn, cs, ce, CASE {label_of} END AS label FROM {p}touches
            WHERE touch_class IS NOT NULL AND ce > cs),
        points AS (
            SELECT dn, cs AS p, {lab}{label_unit} AS dl, 0 AS dw, CAST(NULL AS INTEGER) AS v
                FROM labelled
            UNION ALL SELECT dn, ce, {lab}-{label_unit}, 0, NULL FROM labelled
            UNION ALL SELECT dn, a, {"-2, " if not packed else ""}0, {ball_unit}, NULL
                FROM {p}ball
            UNION ALL SELECT dn, b, {"-2, " if not packed else ""}0, -{ball_unit}, NULL
                FROM {p}ball
            UNION ALL SELECT dn, started, {"-3, " if not packed else ""}0, {stall_unit}, NULL
                FROM {p}stalls
            UNION ALL SELECT s.dn, coalesce(s.ended, d.le), {"-3, " if not packed else ""}0,
                -{stall_unit}, NULL
                FROM {p}stalls s JOIN {p}deals d USING (dn)
            UNION ALL SELECT dn, entered, {"-1, " if not packed else ""}0, 0, visit
                FROM {p}visits
            UNION ALL SELECT dn, le, {"-1, " if not packed else ""}0, 0, NULL FROM {p}deals),
        swept AS (
            SELECT dn, lead(p) OVER w - p AS len, max(v) OVER w AS vno, {running}
            FROM points
            WINDOW w AS (PARTITION BY dn ORDER BY p ROWS UNBOUNDED PRECEDING))
        SELECT dn, vno, CASE {which} ELSE {wait} END AS label, len, {ball} AS ball,
               {stalled} AS stalled
        FROM swept WHERE len > 0"""


_TOTAL_COLUMNS = (
    "lead_time_us",
    "value_added_us",
    "necessary_non_value_added_us",
    "w_rework_us",
    "w_chasing_us",
    "w_no_show_us",
    "w_over_processing_us",
    "w_overproduction_us",
    "wait_us",
    "waiting_on_us_us",
    "inventory_us",
    "rework",
    *(f"n_{k}" for k in TOUCH_KINDS),
)


def _joined(prefix: str, columns: Sequence[str]) -> str:
    """SQL concatenating columns (text, or '' for NULL) with the field separator."""
    return f" || '{SEP}' || ".join(f"coalesce(CAST({prefix}{c} AS VARCHAR), '')" for c in columns)


def _hash_steps(policy: Policy, p: str) -> list[str]:
    version = _q(policy.version)
    totals = _joined("", _TOTAL_COLUMNS)
    return [
        f"""CREATE OR REPLACE TEMP TABLE {p}out AS
        WITH totals AS (
            SELECT dn, {", ".join(f"sum({c}) AS {c}" for c in _TOTAL_COLUMNS)}
            FROM {p}stages GROUP BY dn),
        last_va AS (
            SELECT t.dn, arg_max(k.event_id, {{'cs': t.cs, 'id': k.event_id}}) AS last_id,
                   max(t.cs) AS last_at
            FROM {p}touches t JOIN {p}known k USING (ord)
            WHERE t.touch_class = {_q(VA)} GROUP BY t.dn),
        current AS (SELECT dn, arg_max(stage, visit) AS stage FROM {p}visits GROUP BY dn)
        SELECT d.deal_id, d.status,
               CASE d.status WHEN 'won' THEN {_q(policy.stages.won)}
                             WHEN 'lost' THEN {_q(policy.stages.lost)} ELSE c.stage END AS stage,
               d.owner_id, d.segment, d.product, d.amount, d.currency, d.ls AS opened_us,
               CASE WHEN d.status = 'open' THEN NULL ELSE d.le END AS closed_us,
               d.as_of AS as_of_us, l.last_id, l.last_at, d.dn, t.* EXCLUDE (dn)
        FROM {p}deals d JOIN totals t USING (dn) JOIN current c USING (dn)
        LEFT JOIN last_va l USING (dn)""",
        f"""CREATE OR REPLACE TEMP TABLE {p}lines AS
        SELECT dn, 0 AS section, CAST(0 AS BIGINT) AS k,
               'D{SEP}' || deal_id || '{SEP}' || {version} || '{SEP}' ||
               {
            _joined(
                "",
                (
                    "status",
                    "stage",
                    "owner_id",
                    "segment",
                    "product",
                    "amount",
                    "currency",
                    "opened_us",
                    "closed_us",
                    "as_of_us",
                    "last_id",
                    "last_at",
                ),
            )
        } || '{SEP}' || {totals} AS line
        FROM {p}out
        UNION ALL
        SELECT dn, 1, position, 'S{SEP}' || stage || '{SEP}' || visits || '{SEP}' || {totals}
        FROM {p}stages
        UNION ALL
        SELECT dn, 2, visit, 'V{SEP}' ||
               {
            _joined("", ("stage", "entered", "left_at", "CAST(regression AS INTEGER)", "event_id"))
        }
        FROM {p}visits
        UNION ALL
        SELECT t.dn, 3, t.ord, 'T{SEP}' ||
               {
            _joined(
                "", ("k.event_id", "t.cs", "t.ce", "v.stage", "t.touch_class", "t.waste", "t.rule")
            )
        }
        FROM {p}touches t JOIN {p}known k USING (ord)
        JOIN {p}visits v ON v.dn = t.dn AND v.visit = t.vno
        UNION ALL
        SELECT dn, 4, started, 'X{SEP}' ||
               {_joined("", ("stage", "started", "ended", "threshold_us"))}
        FROM {p}stalls""",
        f"""CREATE OR REPLACE TEMP TABLE {p}digests AS
        SELECT n.deal_id, x.digest
        FROM (SELECT dn, sha256(string_agg(line, '\n' ORDER BY section, k)) AS digest
              FROM {p}lines GROUP BY dn) x
        JOIN {p}dealnos n USING (dn)""",
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
    connection: duckdb.DuckDBPyConnection,
    policy: Policy,
    as_of: datetime | None = None,
    *,
    prefix: str = "rp_",
) -> SqlReplay:
    """Fold every archived deal in DuckDB under `policy`, as known at `as_of` (None: all).

    Works on a read-only connection (the tables it builds are temporary); an archive
    written before the fold facts existed gets them derived for this connection only.
    """
    if as_of is not None and as_of.utcoffset() is None:
        raise ValueError("as_of must be timezone-aware, like event times")
    has_facts = connection.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'fold_facts'"
    ).fetchall()[0][0]
    if not has_facts:
        connection.execute(FACTS_DDL.replace("CREATE TABLE", "CREATE TEMP TABLE"))
        fill_facts(connection)
    steps = _steps(policy, as_of, prefix, packed=True)
    for statement in steps[:-2]:
        connection.execute(statement)
    most = connection.execute(f"SELECT coalesce(max(touches), 0) FROM {prefix}deals").fetchall()
    if most[0][0] >= MAX_PACKED:
        steps = _steps(policy, as_of, prefix, packed=False)
    for statement in steps[-2:] + _hash_steps(policy, prefix):
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


def _totals_of(connection: duckdb.DuckDBPyConnection, prefix: str) -> Totals:
    row = connection.execute(
        f"SELECT count(*), {', '.join(f'coalesce(sum({c}), 0)' for c in _TOTAL_COLUMNS)} "
        f"FROM {prefix}out"
    ).fetchall()[0]
    deals, *values = (int(v) for v in row)
    named = dict(zip(_TOTAL_COLUMNS, values, strict=True))
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
