"""`gemba assumptions`: check strategy claims against history, with evidence and a verdict."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.text import Text

from streams.cli.common import (
    command_policy,
    event_log,
    guarded,
    json_text,
    parse_as_of,
    settings_of,
    wide_console,
)
from streams.cli.terminal_text import LiteralTable, literal, literal_lines, printable
from streams.errors import GembaError
from streams.reports.assumptions import (
    VERDICT_RULES,
    figure,
    p_text,
    period_label,
    report_document,
)

if TYPE_CHECKING:
    from projections.assumptions.evaluation import AssumptionsReport
    from projections.assumptions.file import Assumptions

__all__ = ["assumptions", "code_version", "register"]

_COLOURS = {"supported": "green", "refuted": "red", "inconclusive": "yellow"}
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _when(report: AssumptionsReport) -> str:
    as_of = report.reproducibility.as_of
    return "all events" if as_of is None else f"as of {as_of.isoformat()}"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(_PROJECT_ROOT), *args],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version() -> str:
    """The installed gemba version, plus the git commit (and `.dirty`) when run from a checkout."""
    try:
        version = metadata.version("gemba")
    except metadata.PackageNotFoundError:
        version = "unknown"
    if (
        not (_PROJECT_ROOT / ".git").exists()
        or (commit := _git("rev-parse", "--short=12", "HEAD")) is None
    ):
        return version
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{version}+git.{commit}{'.dirty' if dirty else ''}"


def _load(path: Path) -> Assumptions:
    from projections.assumptions.file import AssumptionsError, load_assumptions

    try:
        return load_assumptions(path)
    except AssumptionsError as exc:
        raise GembaError(str(exc)) from None


def _claims_table(report: AssumptionsReport) -> LiteralTable:
    confidence = report.reproducibility.evaluation.confidence
    table = LiteralTable(
        "claim", "metric", "cohort (closed)", "other (closed)", "effect",
        f"{confidence:.0%} interval", "p", "Holm p", "verdict",
        title=f"{report.title or 'Strategy assumptions'}, {_when(report)}",
    )  # fmt: skip
    for result in report.results:
        claim, metric = result.claim, result.claim.metric
        interval = "-"
        if result.interval is not None:
            low, high = (figure(bound, metric, effect=True) for bound in result.interval)
            interval = f"[{low}, {high}]"
        colour = _COLOURS[str(result.verdict)]
        other = "the rest" if claim.other is None else claim.other.describe()
        table.add_row(
            Text.assemble(
                literal(claim.name, "bold"), "\n",
                literal_lines([claim.cohort.describe(), f"vs {other}"], "dim"),
            ),
            literal_lines([metric, f"(expect {claim.expect})"]),
            f"{figure(result.cohort.value, metric)} ({result.cohort.measured:,})",
            f"{figure(result.other.value, metric)} ({result.other.measured:,})",
            figure(result.effect, metric, effect=True), interval,
            p_text(result.p_value), p_text(result.adjusted_p),
            Text.assemble(literal(result.verdict, colour), "\n", literal(result.reason)),
        )  # fmt: skip
    return table


def _trend_table(name: str, reports: tuple[AssumptionsReport, ...]) -> LiteralTable:
    table = LiteralTable(
        "month end", "cohort", "other", "effect", "interval", "Holm p", "verdict",
        title=f"Trend: {name}", title_justify="left",
    )  # fmt: skip
    for report in reports:
        result = next(each for each in report.results if each.claim.name == name)
        metric = result.claim.metric
        interval = "-"
        if result.interval is not None:
            interval = "[{}, {}]".format(*(figure(b, metric, effect=True) for b in result.interval))
        colour = _COLOURS[str(result.verdict)]
        table.add_row(
            period_label(report), f"{result.cohort.measured:,}", f"{result.other.measured:,}",
            figure(result.effect, metric, effect=True), interval, p_text(result.adjusted_p),
            literal(result.verdict, colour),
        )  # fmt: skip
    return table


def _reproduce_lines(document: dict[str, Any], file: Path) -> list[str]:
    stated = document["reproducibility"]
    as_of = f" --as-of {stated['as_of']}" if stated["as_of"] else ""
    return [
        f"policy {stated['policy_version']}, code {stated['code_version']}, "
        f"assumptions {stated['assumptions_version']}, seed {stated['seed']}",
        f"log: {stated['events_read']:,} events read, {stated['events_known']:,} known "
        f"({stated['distinct_events']:,} distinct), as of {stated['as_of'] or 'all events'}, "
        f"event ids sha256:{stated['event_ids_sha256']}",
        f"method: bootstrap {stated['bootstrap_resamples']:,} resamples "
        f"({stated['confidence']:.0%} percentile interval), "
        f"permutation test {stated['permutations']:,} splits, "
        f"Holm-Bonferroni across {len(document['claims'])} claim(s), alpha {stated['alpha']:g}",
        f"rerun: gemba assumptions check {file}{as_of} --seed {stated['seed']}",
    ]


@click.group()
def assumptions() -> None:
    """Strategy assumptions as testable claims: cohorts, a metric, a verdict with evidence."""


@assumptions.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--as-of", "as_of", help="Only what had happened and was recorded by then.")
@click.option(
    "--policy", "policy_file", type=click.Path(path_type=Path, dir_okay=False),
    help="Policy TOML (default: GEMBA_POLICY_FILE or the shipped one).",
)  # fmt: skip
@click.option("--trend", is_flag=True, help="Also evaluate every claim at each month end.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--html", "html_out", type=click.Path(path_type=Path, dir_okay=False),
    help="Also write a self-contained HTML report to this file.",
)  # fmt: skip
@click.option("--seed", type=int, default=None, help="Random seed (default: the file's, or 1).")
@click.option(
    "--from", "source", type=click.Choice(["duckdb", "kafka"]), default="duckdb",
    show_default=True, help="Read the history archive, or the touches topic from offset 0.",
)  # fmt: skip
@click.pass_context
def check(
    ctx: click.Context, file: Path, as_of: str | None, policy_file: Path | None, trend: bool,
    as_json: bool, html_out: Path | None, seed: int | None, source: str,
) -> None:  # fmt: skip
    """Evaluate every claim of FILE over history as of a time, and give each a verdict.

    For each claim: cohort sizes (closed deals), the metric in each cohort, the
    effect with a bootstrap confidence interval, a permutation-test p-value, the
    p-value adjusted across the file's claims (Holm-Bonferroni), and a verdict:
    supported, refuted or inconclusive. Everything needed to reproduce it is
    printed with it: policy, code and file versions, as-of time, the log's
    position and hash, and the seed.
    """
    from projections.assumptions.evaluation import assumption_trend, check_assumptions

    settings = settings_of(ctx)
    claims = _load(file)
    policy = command_policy(settings, policy_file)
    moment = parse_as_of(as_of)
    records = event_log(settings, source)
    version = code_version()
    if trend:
        reports = guarded(
            lambda: assumption_trend(
                records, claims, policy, as_of=moment, seed=seed, code_version=version
            )
        )
    else:
        report = guarded(
            lambda: check_assumptions(
                records, claims, policy, as_of=moment, seed=seed, code_version=version
            )
        )
        reports = (report,)
    final = reports[-1]
    document = report_document(final)
    trend_documents = [report_document(report) for report in reports] if trend else []
    if html_out is not None:
        from streams.reports.assumptions_html import assumptions_html

        page = assumptions_html(document, VERDICT_RULES, trend_documents)
        try:
            html_out.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise GembaError(f"cannot write {html_out}: {exc.strerror}") from None
    if as_json:
        click.echo(json_text(document | ({"trend": trend_documents} if trend else {})))
        return
    console = wide_console()
    console.print(_claims_table(final))
    if trend:
        for result in final.results:
            console.print(_trend_table(result.claim.name, reports))
    for line in _reproduce_lines(document, file):
        click.echo(printable(line))
    if html_out is not None:
        click.echo(printable(f"HTML report: {html_out}"))


@assumptions.command("fields")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def fields(as_json: bool) -> None:
    """List the deal facts a cohort may test, and the metrics a claim may compare."""
    from projections.assumptions.cohorts import OPERATORS
    from projections.assumptions.facts import FIELDS
    from projections.assumptions.stats import METRICS

    if as_json:
        click.echo(
            json_text(
                {
                    "fields": [
                        {"name": f.name, "kind": str(f.kind), "meaning": f.meaning}
                        for f in FIELDS.values()
                    ],
                    "metrics": [{"name": m.name, "meaning": m.meaning} for m in METRICS.values()],
                    "operators": {op: sorted(map(str, kinds)) for op, kinds in OPERATORS.items()},
                }
            )
        )
        return
    facts = LiteralTable("field", "kind", "meaning", title="Deal facts (cohorts test these)")
    for field in FIELDS.values():
        facts.add_row(field.name, str(field.kind), field.meaning)
    metrics = LiteralTable("metric", "meaning", title="Metrics (closed deals only)")
    for metric in METRICS.values():
        metrics.add_row(metric.name, metric.meaning)
    operators = LiteralTable("op", "applies to", title="Operators")
    for op, kinds in OPERATORS.items():
        operators.add_row(op, ", ".join(sorted(map(str, kinds))))
    console = wide_console()
    for table in (facts, metrics, operators):
        console.print(table)


def register(cli: click.Group) -> None:
    """Add `gemba assumptions` to the command line."""
    cli.add_command(assumptions)
