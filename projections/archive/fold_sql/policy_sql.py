"""The policy as SQL literals and small relations, for the fold's statements."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from projections.categories import TouchClass
from projections.intervals import MICROSECOND
from projections.policy.model import Policy

__all__ = ["NNVA", "VA", "WASTE", "PolicySql", "quoted", "sql_list"]

VA = str(TouchClass.VALUE_ADDED)
NNVA = str(TouchClass.NECESSARY_NON_VALUE_ADDED)
WASTE = str(TouchClass.WASTE)


def quoted(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def sql_list(values: Iterable[str]) -> str:
    """A parenthesised list of string literals for IN (never empty: `(NULL)` matches none)."""
    listed = [quoted(str(v)) for v in values]
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
    return quoted(value) if kind == "VARCHAR" else f"CAST({int(value)} AS {kind})"


def _days_us(days: float) -> int:
    return timedelta(days=days) // MICROSECOND


@dataclass(frozen=True)
class PolicySql:
    """The policy as SQL literals and small relations."""

    policy: Policy

    def minutes(self, name: str) -> int:
        """A standard time of the policy, in microseconds."""
        return int(getattr(self.policy.standard_minutes, name)) * 60_000_000

    @property
    def ranks(self) -> str:
        """The open stages with their rank in the flow: (stage, stage_rank)."""
        rows = [(stage, rank) for rank, stage in enumerate(self.policy.stages.order)]
        return _values(rows, "stage, stage_rank", ("VARCHAR", "INTEGER"))

    @property
    def thresholds(self) -> str:
        """The stall thresholds, by stage and by (segment, stage): (segment, stage, threshold_us).

        Python twin: projections.policy.model.StallPolicy.threshold (the configured ones).
        """
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
