"""The SQL fold's results as the canonical lines and digests its content hash covers."""

from __future__ import annotations

from collections.abc import Sequence

from projections.archive.canonical import SEP, TOUCH_KINDS
from projections.archive.fold_sql.policy_sql import VA, quoted
from projections.policy.model import Policy

__all__ = [
    "TOTAL_COLUMNS",
    "canonical_lines_sql",
    "deal_digests_sql",
    "deal_summary_sql",
    "hash_statements",
]

TOTAL_COLUMNS = (
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
"""The totals of a deal or stage, as columns of `{p}out` and `{p}stages`, in line order."""


def _joined(prefix: str, columns: Sequence[str]) -> str:
    """SQL concatenating columns (text, or '' for NULL) with the field separator."""
    return f" || '{SEP}' || ".join(f"coalesce(CAST({prefix}{c} AS VARCHAR), '')" for c in columns)


def deal_summary_sql(policy: Policy, p: str) -> str:
    """`{p}out`: one row per deal: its status, stage (the policy's name for won or lost),
    owner, amount, times, last value-added touch and totals.

    Python twin: projections.deal.value_stream.deal_value_stream (the DealValueStream fields).
    """
    won, lost = quoted(policy.stages.won), quoted(policy.stages.lost)
    return f"""CREATE OR REPLACE TEMP TABLE {p}out AS
        WITH totals AS (
            SELECT dn, {", ".join(f"sum({c}) AS {c}" for c in TOTAL_COLUMNS)}
            FROM {p}stages GROUP BY dn),
        last_va AS (
            SELECT t.dn, arg_max(k.event_id, {{'cs': t.cs, 'id': k.event_id}}) AS last_id,
                   max(t.cs) AS last_at
            FROM {p}touches t JOIN {p}known k USING (ord)
            WHERE t.touch_class = {quoted(VA)} GROUP BY t.dn),
        current AS (SELECT dn, arg_max(stage, visit) AS stage FROM {p}visits GROUP BY dn)
        SELECT d.deal_id, d.status,
               CASE d.status WHEN 'won' THEN {won}
                             WHEN 'lost' THEN {lost} ELSE c.stage END AS stage,
               d.owner_id, d.segment, d.product, d.amount, d.currency, d.ls AS opened_us,
               CASE WHEN d.status = 'open' THEN NULL ELSE d.le END AS closed_us,
               d.as_of AS as_of_us, l.last_id, l.last_at, d.dn, t.* EXCLUDE (dn)
        FROM {p}deals d JOIN totals t USING (dn) JOIN current c USING (dn)
        LEFT JOIN last_va l USING (dn)"""


_DEAL_FIELDS = (
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
)


def canonical_lines_sql(policy: Policy, p: str) -> str:
    """`{p}lines`: every deal's canonical lines (deal, stages, visits, touches, stalls),
    each with its section and its place in it.

    Python twin: projections.archive.canonical.canonical_lines.
    """
    version = quoted(policy.version)
    totals = _joined("", TOTAL_COLUMNS)
    visit = _joined("", ("stage", "entered", "left_at", "CAST(regression AS INTEGER)", "event_id"))
    touch = _joined(
        "", ("k.event_id", "t.cs", "t.ce", "v.stage", "t.touch_class", "t.waste", "t.rule")
    )
    return f"""CREATE OR REPLACE TEMP TABLE {p}lines AS
        SELECT dn, 0 AS section, CAST(0 AS BIGINT) AS k,
               'D{SEP}' || deal_id || '{SEP}' || {version} || '{SEP}' ||
               {_joined("", _DEAL_FIELDS)} || '{SEP}' || {totals} AS line
        FROM {p}out
        UNION ALL
        SELECT dn, 1, position, 'S{SEP}' || stage || '{SEP}' || visits || '{SEP}' || {totals}
        FROM {p}stages
        UNION ALL
        SELECT dn, 2, visit, 'V{SEP}' ||
               {visit}
        FROM {p}visits
        UNION ALL
        SELECT t.dn, 3, t.ord, 'T{SEP}' ||
               {touch}
        FROM {p}touches t JOIN {p}known k USING (ord)
        JOIN {p}visits v ON v.dn = t.dn AND v.visit = t.vno
        UNION ALL
        SELECT dn, 4, started, 'X{SEP}' ||
               {_joined("", ("stage", "started", "ended", "threshold_us"))}
        FROM {p}stalls"""


def deal_digests_sql(p: str) -> str:
    """`{p}digests`: sha256 of each deal's canonical lines, in order.

    Python twin: projections.archive.canonical.deal_digest.
    """
    return f"""CREATE OR REPLACE TEMP TABLE {p}digests AS
        SELECT n.deal_id, x.digest
        FROM (SELECT dn, sha256(string_agg(line, '\n' ORDER BY section, k)) AS digest
              FROM {p}lines GROUP BY dn) x
        JOIN {p}dealnos n USING (dn)"""


def hash_statements(policy: Policy, p: str) -> list[str]:
    """The statements after the fold: the deals' summaries, lines and digests."""
    return [deal_summary_sql(policy, p), canonical_lines_sql(policy, p), deal_digests_sql(p)]
