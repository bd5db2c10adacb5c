"""The DOMAIN rules of the fold as SQL: one function per rule, each naming its Python twin.

Each function returns a statement creating the temporary table `{p}<name>` (or a piece
of one) over all deals at once. Deals are numbered (`dn`) and every deal event has its
place in the fold's order, (deal, start, event id), as one integer (`ord`). Touch kinds
are small codes (`ty`): 0 deal_opened, 1 stage_changed, 2 deal_won, 3 deal_lost,
4 call, 5 email, 6 meeting, 7 quote.
"""

from __future__ import annotations

from datetime import datetime

from projections.archive.fold_sql.policy_sql import NNVA, VA, WASTE, PolicySql, quoted, sql_list
from projections.categories import WasteCategory
from projections.intervals import epoch_us
from projections.policy.model import TouchRules

__all__ = [
    "ball_in_our_court_sql",
    "call_rule_sql",
    "deal_life_sql",
    "email_rules_sql",
    "known_at_sql",
    "meeting_rules_sql",
    "quote_rule_sql",
    "rule_counts_sql",
    "stage_visits_sql",
    "stall_episodes_sql",
    "touch_rule_state_sql",
    "touch_rules_sql",
    "touch_span_sql",
    "touches_in_life_sql",
]


def known_at_sql(as_of: datetime | None) -> str:
    """What was known at `as_of`: it occurred, and was recorded, by then (None: all).

    Python twin: projections.deal.event_set.known_at.
    """
    if as_of is None:
        return "true"
    us = epoch_us(as_of)
    return f"occurred_us <= {us} AND recorded_us <= {us}"


def touch_span_sql(par: PolicySql) -> str:
    """A touch's span, `s` to `e`: calls and meetings carry their own; an inbound email
    takes none of ours; outbound emails and quotes take the policy's standard time.

    Python twin: projections.deal.touches.touch_span.
    """
    return f"""CASE WHEN f.type = 'meeting' THEN f.started_us ELSE f.occurred_us END AS s,
               CASE f.type
                   WHEN 'call' THEN f.occurred_us + f.duration_s * 1000000
                   WHEN 'meeting' THEN f.ended_us
                   WHEN 'email' THEN f.occurred_us + CASE
                       WHEN f.direction = 'inbound' THEN 0
                       WHEN f.replies THEN {par.minutes("reply")}
                       ELSE {par.minutes("email")} END
                   WHEN 'quote' THEN f.occurred_us + CASE WHEN f.version = 1
                       THEN {par.minutes("quote")} ELSE {par.minutes("quote_revision")} END
               END AS e"""


def deal_life_sql(p: str) -> str:
    """`{p}deals`: the first open and the first close of each deal (in the fold's order),
    its life from the open to the close (never before the open) or to its watermark (its
    latest known event), its status, and the amount of the win (else of the open).

    Python twin: projections.deal.value_stream._life (with _deal_facts and _status).
    """
    return f"""CREATE OR REPLACE TEMP TABLE {p}deals AS
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
        FROM g JOIN latest USING (dn) JOIN {p}dealnos n USING (dn) WHERE o IS NOT NULL"""


def stage_visits_sql(p: str, par: PolicySql, rules: TouchRules) -> str:
    """`{p}visits`: the stage changes in order; one before the open takes effect at the
    open, one after the close is dropped, one to the stage the deal is in changes nothing;
    a move to an earlier stage is a regression. `vcode` packs the visit number, the stage
    and whether quotes in it are overproduction (rule 7), for the touches' running max.

    Python twin: projections.deal.stages.stage_history.
    """
    return f"""CREATE OR REPLACE TEMP TABLE {p}visits AS
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
                   + CAST(coalesce(k.stage IN {sql_list(rules.overproduction_stages)}, false)
                          AS INTEGER) AS vcode
        FROM kept k
        LEFT JOIN {par.ranks} r ON r.stage = k.stage
        LEFT JOIN {par.ranks} b ON b.stage = k.before
        WINDOW w AS (PARTITION BY k.dn ORDER BY k.ord)"""


def touches_in_life_sql(p: str) -> str:
    """`{p}spans`: the touches that meet the deal's life, clipped to it (a touch without
    length counts when it falls in [open, close)).

    Python twin: projections.deal.touch_rules._within_life (and the clip in classify_touches).
    """
    return f"""CREATE OR REPLACE TEMP TABLE {p}spans AS
        SELECT k.dn, k.ord, k.event_id, k.ty, k.inbound, k.ok, k.kind, k.replies,
               k.first_or_asked, k.s, greatest(k.s, d.ls) AS cs,
               greatest(greatest(k.s, d.ls), least(k.e, d.le)) AS ce, d.ls
        FROM {p}known k JOIN {p}deals d USING (dn)
        WHERE k.ty BETWEEN 4 AND 7
          AND CASE WHEN k.e > k.s THEN k.s < d.le AND k.e > d.ls
                   ELSE d.ls <= k.s AND k.s < d.le END"""


def _held_same_kind(rules: TouchRules) -> str:
    """Held meetings of the touch's kind so far, for the kinds repeated as rework (rule 3)."""
    repeated = [str(kind) for kind in rules.rework_when_repeated]
    held_same = " ".join(
        f"WHEN {quoted(kind)} THEN "
        f"count(*) FILTER (WHERE ty = 6 AND ok AND kind = {quoted(kind)}) OVER w"
        for kind in repeated
    )
    return f"CASE kind {held_same} END" if repeated else "CAST(NULL AS BIGINT)"


def touch_rule_state_sql(p: str, rules: TouchRules) -> str:
    """`{p}state`: what earlier touches tell the rules about each touch, as running counts
    in the order (start, event id): `grp` numbers the rows of emails between two-way
    contacts (a held customer meeting, a connected call, an inbound email), `held_same`
    the held meetings of its kind; and its visit, the latest entered by its start.

    Python twin: projections.deal.touch_rules._History (and projections.deal.stages.stage_at).
    """
    return f"""CREATE OR REPLACE TEMP TABLE {p}state AS
        SELECT * EXCLUDE (typ, vcode, top), CAST(top >> 32 AS INTEGER) AS vno,
               (top >> 1) & 2147483647 AS scode, (top & 1) = 1 AS overproduction
        FROM (
            SELECT *, max(vcode) OVER w AS top,
                   count(*) FILTER (WHERE (ty = 6 AND ok AND kind <> 'internal')
                                       OR (ty = 4 AND ok) OR (ty = 5 AND inbound)) OVER w
                       AS grp,
                   {_held_same_kind(rules)} AS held_same
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
        WHERE typ = 1"""


def rule_counts_sql(p: str) -> str:
    """`staged`: each touch of `{p}state` with `n`, the count its rule compares: an outbound
    email that does not reply counts the emails in a row since the last two-way contact
    (rule 6, chasing), a held internal meeting the internal meetings of its stage so far
    (rule 2, the allowance); other touches 0.

    Python twin: projections.deal.touch_rules._History (emails_without_reply,
    internal_meetings).
    """
    return f"""staged AS (
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
              AND NOT (ty = 6 AND ok AND kind = 'internal'))"""


_NEXT_WHEN = "\n                    "


def meeting_rules_sql(rules: TouchRules) -> str:
    """Rules 1-3 as verdicts 1-6: a meeting not held is no-show (1); an internal one is
    necessary (3), over-processing past the allowance per stage (2); a held customer
    meeting is rework when its kind repeats (4), value-added for the value-added kinds (5),
    else necessary (6).

    Python twin: projections.deal.touch_rules._meeting.
    """
    allowance = rules.internal_meeting_allowance_per_stage
    repeated = sql_list(str(kind) for kind in rules.rework_when_repeated)
    valued = sql_list(rules.value_added_meeting_kinds)
    return _NEXT_WHEN.join(
        [
            "WHEN ty = 6 AND NOT ok THEN 1",
            f"WHEN ty = 6 AND kind = 'internal' AND n > {allowance} THEN 2",
            "WHEN ty = 6 AND kind = 'internal' THEN 3",
            f"WHEN ty = 6 AND kind IN {repeated} AND held_same > 1 THEN 4",
            f"WHEN ty = 6 AND kind IN {valued} THEN 5",
            "WHEN ty = 6 THEN 6",
        ]
    )


def call_rule_sql() -> str:
    """Rule 4 as verdicts 7-8: a connected call is value-added (7), any other chasing (8).

    Python twin: projections.deal.touch_rules._call.
    """
    return _NEXT_WHEN.join(["WHEN ty = 4 AND ok THEN 7", "WHEN ty = 4 THEN 8"])


def email_rules_sql(rules: TouchRules) -> str:
    """Rules 5-6 as verdicts 9-12: an inbound email takes none of our time (9); a reply to
    the customer is value-added (10); other outbound emails are chasing past the policy's
    emails before chasing in a row (11), else necessary (12).

    Python twin: projections.deal.touch_rules._email.
    """
    return _NEXT_WHEN.join(
        [
            "WHEN ty = 5 AND inbound THEN 9",
            "WHEN ty = 5 AND replies THEN 10",
            f"WHEN ty = 5 AND n > {rules.emails_before_chasing} THEN 11",
            "WHEN ty = 5 THEN 12",
        ]
    )


def quote_rule_sql() -> str:
    """Rule 7 as verdicts 13-15: a quote in an overproduction stage is overproduction (13);
    the first version, or one the customer asked for, is value-added (14); else rework (15).

    Python twin: projections.deal.touch_rules._quote.
    """
    return _NEXT_WHEN.join(
        ["WHEN overproduction THEN 13", "WHEN first_or_asked THEN 14", "ELSE 15"]
    )


def touch_rules_sql(p: str, rules: TouchRules) -> str:
    """`{p}touches`: the touch rules (DOMAIN.md 1-7), first match wins: each touch's class,
    waste and rule number from its verdict.

    Python twin: projections.deal.touch_rules.classify_touches (its _verdict).
    """
    w = {category.name: quoted(str(category)) for category in WasteCategory}
    return f"""CREATE OR REPLACE TEMP TABLE {p}touches AS
        WITH {rule_counts_sql(p)},
        judged AS (
            SELECT *,
                CASE
                    {meeting_rules_sql(rules)}
                    {call_rule_sql()}
                    {email_rules_sql(rules)}
                    {quote_rule_sql()}
                END AS verdict
            FROM staged)
        SELECT dn, ord, ty, cs, ce, ls, vno,
               CASE WHEN verdict IN (5, 7, 10, 14) THEN {quoted(VA)}
                    WHEN verdict IN (3, 6, 12) THEN {quoted(NNVA)}
                    WHEN verdict = 9 THEN NULL ELSE {quoted(WASTE)} END AS touch_class,
               CASE verdict WHEN 1 THEN {w["NO_SHOW"]} WHEN 2 THEN {w["OVER_PROCESSING"]}
                    WHEN 4 THEN {w["REWORK"]} WHEN 8 THEN {w["CHASING"]}
                    WHEN 11 THEN {w["CHASING"]} WHEN 13 THEN {w["OVERPRODUCTION"]}
                    WHEN 15 THEN {w["REWORK"]} END AS waste,
               CASE WHEN verdict = 1 THEN 1 WHEN verdict <= 3 THEN 2 WHEN verdict <= 6 THEN 3
                    WHEN verdict <= 8 THEN 4 WHEN verdict = 9 THEN 5 WHEN verdict <= 12 THEN 6
                    ELSE 7 END AS rule
        FROM judged"""


def ball_in_our_court_sql(p: str) -> str:
    """`{p}ball`: the ball in our court (rule 5), from the first inbound touch after our
    last move towards the customer until our next one (or the end); an internal meeting
    is no move. Touches in order of their clipped start, then event id.

    Python twin: projections.deal.waiting.ball_in_our_court.
    """
    return f"""CREATE OR REPLACE TEMP TABLE {p}ball AS
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
        WHERE s.since IS NOT NULL AND coalesce(s.until, d.le) > s.since"""


def stall_episodes_sql(p: str, par: PolicySql) -> str:
    """`{p}stalls`: within each visit of a stage with a threshold (the segment's, else the
    stage's), each gap between the entry, the value-added touch starts and the visit's end
    longer than it is an episode from the crossing to the gap's end (open while the deal
    still sits in the stage).

    Python twin: projections.deal.stall.stall_episodes.
    """
    return f"""CREATE OR REPLACE TEMP TABLE {p}stalls AS
        WITH limits AS (
            SELECT v.dn, v.visit, v.stage, v.entered, v.left_at, v.le,
                   coalesce(o.threshold_us, t.threshold_us) AS threshold_us
            FROM {p}visits v JOIN {p}deals d USING (dn)
            LEFT JOIN {par.thresholds} o ON o.segment = d.segment AND o.stage = v.stage
            LEFT JOIN {par.thresholds} t ON t.segment IS NULL AND t.stage = v.stage),
        points AS (
            SELECT dn, visit, entered AS p, 0 AS o FROM limits WHERE threshold_us IS NOT NULL
            UNION ALL
            SELECT dn, vno, cs, 1 FROM {p}touches WHERE touch_class = {quoted(VA)}
            UNION ALL
            SELECT dn, visit, coalesce(left_at, le), 2 FROM limits
                WHERE threshold_us IS NOT NULL),
        gaps AS (SELECT *, lag(p) OVER (PARTITION BY dn, visit ORDER BY p, o) AS clock FROM points)
        SELECT g.dn, l.visit, l.stage, g.clock + l.threshold_us AS started,
               CASE WHEN g.o = 2 AND l.left_at IS NULL THEN NULL ELSE g.p END AS ended,
               l.threshold_us
        FROM gaps g JOIN limits l USING (dn, visit)
        WHERE g.o > 0 AND l.threshold_us IS NOT NULL AND g.clock + l.threshold_us < g.p"""
