"""Assumption reports as plain documents (for JSON and HTML), and figures formatted to read."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from projections.assumptions.evaluation import AssumptionsReport, ClaimResult, Reproducibility
from projections.assumptions.stats import METRICS

__all__ = [
    "VERDICT_RULES",
    "claim_document",
    "figure",
    "p_text",
    "period_label",
    "report_document",
    "reproducibility_document",
]

VERDICT_RULES = (
    "inconclusive if either cohort has fewer than min_sample closed deals",
    "inconclusive if the interval spans zero",
    "inconclusive if the Holm-adjusted p-value is at least alpha",
    "refuted if the interval lies wholly on the other side",
    "refuted if it lies wholly on the expected side but wholly below min_effect",
    "supported if it lies wholly on the expected side and the effect reaches min_effect",
    "inconclusive otherwise (the effect may be below min_effect)",
)
"""The verdict rules of projections.assumptions.evaluation, first match wins, in words."""


def figure(value: float | None, metric: str, *, effect: bool = False) -> str:
    """A metric value (or an effect, signed) in the metric's unit, rounded to read."""
    if value is None:
        return "-"
    chosen = METRICS[metric]
    unit = chosen.effect_unit if effect else chosen.unit
    sign = "+" if effect else ""
    if metric == "revenue_per_deal":
        return f"{value:{sign},.0f}"
    if metric == "mean_rework":
        return f"{value:{sign}.3f}"
    digits = 1 if metric in {"win_rate", "median_lead_time_days"} else 3
    return f"{value:{sign}.{digits}f}{' ' + unit if unit else ''}"


def p_text(value: float | None) -> str:
    """A p-value to four places; '-' when none was computed."""
    return "-" if value is None else f"{value:.4f}"


def period_label(report: AssumptionsReport) -> str:
    """'2026-05' for a month end (as of 2026-06-01 00:00 UTC), else the as-of time, or 'all events'.

    For the rows of a trend; titles name the as-of time in full."""
    as_of = report.reproducibility.as_of
    if as_of is None:
        return "all events"
    if (as_of.day, as_of.hour, as_of.minute, as_of.second, as_of.microsecond) == (1, 0, 0, 0, 0):
        return f"{as_of - timedelta(days=1):%Y-%m}"
    return f"as of {as_of.isoformat()}"


def reproducibility_document(stated: Reproducibility) -> dict[str, Any]:
    """What the figures were computed from."""
    position = stated.position
    evaluation = stated.evaluation
    return {
        "policy_version": stated.policy_version,
        "code_version": stated.code_version,
        "assumptions_version": stated.assumptions_version,
        "as_of": None if stated.as_of is None else stated.as_of.isoformat(),
        "events_read": position.events_read,
        "events_known": position.events_known,
        "distinct_events": position.distinct_events,
        "event_ids_sha256": position.event_ids_sha256,
        "latest_event_at": (
            None if position.latest_event_at is None else position.latest_event_at.isoformat()
        ),
        "seed": stated.seed,
        "bootstrap_resamples": evaluation.bootstrap,
        "permutations": evaluation.permutations,
        "confidence": evaluation.confidence,
        "alpha": evaluation.alpha,
        "multiple_testing": "holm-bonferroni",
    }


def claim_document(result: ClaimResult) -> dict[str, Any]:
    """One claim's definition, figures and verdict."""
    claim = result.claim
    return {
        "name": claim.name,
        "statement": claim.statement,
        "metric": claim.metric,
        "expect": str(claim.expect),
        "min_effect": claim.min_effect,
        "min_sample": claim.min_sample,
        "cohort_definition": claim.cohort.describe(),
        "other_definition": claim.describe_other(),
        "cohort": {
            "deals": result.cohort.deals,
            "closed": result.cohort.measured,
            "value": result.cohort.value,
        },
        "other": {
            "deals": result.other.deals,
            "closed": result.other.measured,
            "value": result.other.value,
        },
        "overlap": result.overlap,
        "effect": result.effect,
        "interval": None if result.interval is None else list(result.interval),
        "p_value": result.p_value,
        "adjusted_p": result.adjusted_p,
        "verdict": str(result.verdict),
        "reason": result.reason,
    }


def report_document(report: AssumptionsReport) -> dict[str, Any]:
    """The whole report: every verdict carries the reproducibility block it was computed with."""
    stated = reproducibility_document(report.reproducibility)
    return {
        "title": report.title,
        "period": period_label(report),
        "reproducibility": stated,
        "verdict_rules": list(VERDICT_RULES),
        "claims": [
            claim_document(result) | {"reproducibility": stated} for result in report.results
        ],
    }
