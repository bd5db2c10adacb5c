"""The precedence merge and the stage totals as SQL: a sweep over every boundary of a life."""

from __future__ import annotations

from projections.archive.canonical import TOUCH_KINDS
from projections.archive.fold_sql.policy_sql import PolicySql, quoted
from projections.categories import WasteCategory

__all__ = ["BITS", "MAX_PACKED", "TOUCH_CODES", "precedence_merge_sql", "stage_totals_sql"]

TOUCH_CODES = ((4, "call"), (5, "email"), (6, "meeting"), (7, "quote"))
"""The touch kinds' codes (`ty`) in the fold's tables."""
BITS = 9
MAX_PACKED = 1 << BITS
"""Touches of one deal below which the sweep may pack each class's count in BITS bits."""


def _label_of(labels: list[tuple[str, str, str | None]]) -> str:
    """The WHEN branches giving a classified touch its label: its place in the precedence."""
    return " ".join(
        f"WHEN touch_class = {quoted(c)} AND waste IS NOT DISTINCT FROM "
        f"{quoted(w) if w else 'NULL'} THEN {i}"
        for i, (_, c, w) in enumerate(labels)
    )


def precedence_merge_sql(p: str, par: PolicySql, *, packed: bool) -> str:
    """`{p}stretches`: the precedence merge, a sweep over every boundary in each deal's life.

    Between two consecutive boundaries, the first class (in the policy's precedence, then
    its wastes) with a touch running holds the stretch; with none, it is wait, and
    waiting-on-us or inventory where those run. `packed` keeps the classes' counts packed
    into one integer (exact while no deal has MAX_PACKED touches or more).

    Python twin: projections.deal.measure.time_sets.
    """
    labels = len(par.labels)
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
            SELECT dn, cs, ce, CASE {_label_of(par.labels)} END AS label FROM {p}touches
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


def stage_totals_sql(p: str, par: PolicySql) -> str:
    """`{p}stages`: the totals per stage, all visits of a stage together: lead time, the
    merged stretches by class and waste, wait with waiting-on-us and inventory, touches
    by kind, and rework (regressions, rule 8, plus rework touches); stages in flow order,
    those the policy does not list after them in order of first visit.

    Python twin: projections.deal.value_stream._stage_streams (with measure.measure_totals).
    """
    labels = par.labels
    wait = len(labels)
    rework = quoted(str(WasteCategory.REWORK))
    by_label = ", ".join(
        f"coalesce(sum(len) FILTER (WHERE label = {i}), 0) AS {name}_us"
        for i, (name, _, _) in enumerate(labels)
    )
    return f"""CREATE OR REPLACE TEMP TABLE {p}stages AS
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
                   count(*) FILTER (WHERE waste = {rework}) AS rework_touches,
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
        LEFT JOIN {par.ranks} r ON r.stage = v.stage"""
