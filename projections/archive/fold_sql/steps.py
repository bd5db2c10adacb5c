"""The fold's statements in order: numbered deals, known events, then the rules."""

from __future__ import annotations

from datetime import datetime

from projections.archive.fold_sql.merge import precedence_merge_sql, stage_totals_sql
from projections.archive.fold_sql.policy_sql import PolicySql
from projections.archive.fold_sql.rules import (
    ball_in_our_court_sql,
    deal_life_sql,
    known_at_sql,
    stage_visits_sql,
    stall_episodes_sql,
    touch_rule_state_sql,
    touch_rules_sql,
    touch_span_sql,
    touches_in_life_sql,
)
from projections.policy.model import Policy

__all__ = ["fold_statements"]


def _known_events_sql(p: str, par: PolicySql, as_of: datetime | None) -> str:
    """`{p}known`: the known deal events, typed as small codes, with their spans and their
    place in the fold's order (narrow: the window functions after it carry every column
    they are given)."""
    return f"""CREATE OR REPLACE TEMP TABLE {p}known AS
        SELECT f.deal_no AS dn, f.event_id,
               CAST(CASE f.type WHEN 'deal_opened' THEN 0 WHEN 'stage_changed' THEN 1
                    WHEN 'deal_won' THEN 2 WHEN 'deal_lost' THEN 3 WHEN 'call' THEN 4
                    WHEN 'email' THEN 5 WHEN 'meeting' THEN 6 WHEN 'quote' THEN 7 ELSE 9 END
                    AS TINYINT) AS ty,
               f.occurred_us AS t,
               {touch_span_sql(par)},
               coalesce(f.direction = 'inbound', false) AS inbound,
               coalesce(f.outcome IN ('connected', 'held'), false) AS ok,
               f.kind, coalesce(f.replies, false) AS replies,
               coalesce(f.version = 1 OR f.requested, false) AS first_or_asked,
               row_number() OVER (ORDER BY f.deal_no, s, f.event_id) AS ord
        FROM fold_facts f WHERE {known_at_sql(as_of)}"""


def fold_statements(policy: Policy, as_of: datetime | None, p: str, *, packed: bool) -> list[str]:
    """The fold as SQL statements creating temporary tables named `{p}...`.

    Deals are numbered (`dn`) and every deal event gets its place in the fold's order,
    (deal, start, event id), as one integer (`ord`): the window functions after that
    partition and sort by integers only. The last two statements are the merge and the
    totals; `packed` sweeps with the classes' counts packed into one integer (exact while
    no deal has MAX_PACKED touches or more).
    """
    par = PolicySql(policy)
    return [
        f"""CREATE OR REPLACE TEMP VIEW {p}dealnos AS
        SELECT deal_id, deal_no AS dn FROM deal_numbers""",
        _known_events_sql(p, par, as_of),
        f"""CREATE OR REPLACE TEMP TABLE {p}facts AS
        SELECT k.dn, k.ord, k.ty, k.t, k.event_id, f.stage, f.owner_id, f.segment, f.product,
               f.amount, f.currency
        FROM {p}known k JOIN fold_facts f USING (event_id) WHERE k.ty <= 3""",
        deal_life_sql(p),
        stage_visits_sql(p, par, policy.rules),
        touches_in_life_sql(p),
        touch_rule_state_sql(p, policy.rules),
        touch_rules_sql(p, policy.rules),
        ball_in_our_court_sql(p),
        stall_episodes_sql(p, par),
        precedence_merge_sql(p, par, packed=packed),
        stage_totals_sql(p, par),
    ]
