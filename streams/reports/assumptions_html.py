"""An assumptions report as one self-contained HTML file an auditor can file: no scripts, no CDN."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from streams.reports.assumptions import figure, p_text

__all__ = ["assumptions_html"]

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.supported { color: #17692f; font-weight: bold; } .refuted { color: #a3161b; font-weight: bold; }
.inconclusive { color: #7a5b00; font-weight: bold; }
.statement { color: #555; } code, dd { font-family: ui-monospace, monospace; font-size: .95em; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }
dt { font-weight: bold; } dd { margin: 0; word-break: break-all; }
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _when(as_of: str | None) -> str:
    return "as recorded in the whole log" if as_of is None else f"as of {as_of}"


def _verdict(claim: dict[str, Any]) -> str:
    verdict = _e(claim["verdict"])
    return f'<span class="{verdict}">{verdict}</span>'


def _interval(claim: dict[str, Any]) -> str:
    if claim["interval"] is None:
        return "-"
    low, high = claim["interval"]
    metric = claim["metric"]
    return f"[{figure(low, metric, effect=True)}, {figure(high, metric, effect=True)}]"


def _summary(claims: Sequence[dict[str, Any]], confidence: float) -> str:
    head = (
        "<tr><th>claim</th><th>metric</th><th>expect</th><th>cohort (closed deals)</th>"
        "<th>other (closed deals)</th><th>effect</th>"
        f"<th>{confidence:.0%} interval</th><th>p</th><th>Holm p</th><th>verdict</th></tr>"
    )
    rows = []
    for c in claims:
        metric = c["metric"]
        sides = "".join(
            f"<td class='num'>{figure(c[side]['value'], metric)} ({c[side]['closed']:,})</td>"
            for side in ("cohort", "other")
        )
        rows.append(
            f"<tr><td><b>{_e(c['name'])}</b><br><span class='statement'>{_e(c['statement'])}"
            f"</span></td><td>{_e(metric)}</td><td>{_e(c['expect'])}</td>{sides}"
            f"<td class='num'>{figure(c['effect'], metric, effect=True)}</td>"
            f"<td class='num'>{_interval(c)}</td><td class='num'>{p_text(c['p_value'])}</td>"
            f"<td class='num'>{p_text(c['adjusted_p'])}</td>"
            f"<td>{_verdict(c)}<br>{_e(c['reason'])}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _definitions(claims: Sequence[dict[str, Any]]) -> str:
    items = []
    for c in claims:
        minimum = f"; min_effect {c['min_effect']:g}" if c["min_effect"] else ""
        items.append(
            f"<li><b>{_e(c['name'])}</b>: cohort <code>{_e(c['cohort_definition'])}</code> "
            f"({c['cohort']['deals']:,} deals) against <code>{_e(c['other_definition'])}</code> "
            f"({c['other']['deals']:,} deals); {_e(c['metric'])}, expected {_e(c['expect'])}; "
            f"min_sample {c['min_sample']}{minimum}</li>"
        )
    return f"<ul>{''.join(items)}</ul>"


def _reproducibility(stated: dict[str, Any]) -> str:
    rows = "".join(f"<dt>{_e(key)}</dt><dd>{_e(value)}</dd>" for key, value in stated.items())
    return f"<dl>{rows}</dl>"


def _trend(trend: Sequence[dict[str, Any]]) -> str:
    if not trend:
        return ""
    parts = ["<h2>Trend: each claim at every month end</h2>"]
    names = [claim["name"] for claim in trend[-1]["claims"]]
    for index, name in enumerate(names):
        rows = []
        for point in trend:
            c = point["claims"][index]
            rows.append(
                f"<tr><td>{_e(point['period'])}</td><td class='num'>{c['cohort']['closed']:,}</td>"
                f"<td class='num'>{c['other']['closed']:,}</td>"
                f"<td class='num'>{figure(c['effect'], c['metric'], effect=True)}</td>"
                f"<td class='num'>{_interval(c)}</td><td class='num'>{p_text(c['adjusted_p'])}</td>"
                f"<td>{_verdict(c)}</td></tr>"
            )
        parts.append(
            f"<h3>{_e(name)}</h3><table><tr><th>month end</th><th>cohort</th><th>other</th>"
            f"<th>effect</th><th>interval</th><th>Holm p</th><th>verdict</th></tr>"
            f"{''.join(rows)}</table>"
        )
    return "".join(parts)


def assumptions_html(
    document: dict[str, Any], rules: Sequence[str], trend: Sequence[dict[str, Any]] = ()
) -> str:
    """The report (a report_document) as a standalone HTML page, with the trend if given."""
    stated = document["reproducibility"]
    title = document["title"] or "Strategy assumptions"
    rule_items = "".join(f"<li>{_e(rule)}</li>" for rule in rules)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1><p>Evaluated over history {_e(_when(stated['as_of']))}, under policy "
        f"<code>{_e(stated['policy_version'])}</code>. Effect = metric(cohort) - metric(other), "
        "over closed deals; p-values from a two-sided permutation test, adjusted with the "
        "Holm-Bonferroni method across the claims below.</p>"
        f"{_summary(document['claims'], stated['confidence'])}"
        f"<h2>Definitions</h2>{_definitions(document['claims'])}"
        f"<h2>Verdict rules (first match wins)</h2><ol>{rule_items}</ol>"
        f"<h2>Reproducibility</h2>{_reproducibility(stated)}"
        f"{_trend(trend)}</body></html>\n"
    )
