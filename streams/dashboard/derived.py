"""Views computed from the whole event log (campaigns, assumptions), cached per archive state.

Attribution and the assumption trend fold every deal of the log, which takes
seconds to tens of seconds on the simulator's history. They run in a child
process (one at a time, so a 2-core machine keeps a core for the server), read
the archive themselves, and hand back a plain document stamped with the archive
position they read (the offsets of every partition). The server keeps the last
document of each view: while the archive has not moved it is served as fresh;
once it moves, the last document is served marked stale while a new one is
computed, at most once per `min_interval_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from streams.settings import Settings

if TYPE_CHECKING:
    from projections.policy.model import Policy

__all__ = [
    "Derived",
    "DerivedView",
    "assumption_documents",
    "campaign_documents",
    "run_in_child",
]

log = structlog.get_logger(__name__)
Position = tuple[tuple[str, int, int], ...]


# --- what the child computes -----------------------------------------------------------------


def _log_and_position(settings: Settings) -> tuple[Position, list[Any]]:
    from projections.archive import archived_events
    from projections.archive.dashboard import archive_position
    from streams.archive_access import reading

    with reading(settings) as connection:
        return archive_position(connection), archived_events(connection)


def campaign_documents(settings: Settings, policy: Policy) -> tuple[Position, dict[str, Any]]:
    """Every model's campaign table, the Sankey links and each campaign's linked deals.

    The same figures as `gemba campaigns --json` (and `--flow --json`) over all history.
    """
    from projections.campaigns.history import campaign_history
    from streams.reports.campaigns import MODELS, flow_document, not_opened_document, row_document

    position, records = _log_and_position(settings)
    history = campaign_history(records, policy)
    links: dict[str, set[str]] = {}
    for journey in history.journeys:
        for campaign in journey.campaigns:
            links.setdefault(campaign, set()).add(journey.deal.deal_id)
    unattributed = sum(
        (j.deal.revenue or Decimal(0) for j in history.journeys if j.deal.revenue and not j.path),
        Decimal(0),
    )
    return position, {
        "policy_version": policy.version,
        "deals": len(history.journeys),
        "responses": len(history.responses),
        "models": {model: [row_document(row) for row in history.table(model)] for model in MODELS},
        "flow": flow_document(history.flow()),
        "stage_order": list(policy.stages.order),
        "deals_by_campaign": {campaign: sorted(deals) for campaign, deals in links.items()},
        "unattributed_revenue": str(unattributed),
        "not_opened": not_opened_document(history.not_opened),
    }


def _shown(result: Any) -> dict[str, str]:
    """A claim's figures as `gemba assumptions check` prints them, in the metric's unit."""
    from streams.reports.assumptions import figure, p_text

    metric = result.claim.metric
    interval = "-"
    if result.interval is not None:
        low, high = (figure(bound, metric, effect=True) for bound in result.interval)
        interval = f"[{low}, {high}]"
    return {
        "cohort": figure(result.cohort.value, metric),
        "other": figure(result.other.value, metric),
        "effect": figure(result.effect, metric, effect=True),
        "interval": interval,
        "adjusted_p": p_text(result.adjusted_p),
    }


def assumption_documents(
    settings: Settings, policy: Policy, file: Path, code_version: str
) -> tuple[Position, dict[str, Any]]:
    """Every claim of `file` over all history, and its trend at each month end.

    The last report of the trend is the one `gemba assumptions check FILE` gives.
    """
    from projections.assumptions.evaluation import assumption_trend
    from projections.assumptions.file import load_assumptions
    from streams.reports.assumptions import claim_document, period_label, report_document

    claims = load_assumptions(file)
    position, records = _log_and_position(settings)
    reports = assumption_trend(records, claims, policy, code_version=code_version)
    latest = report_document(reports[-1])
    for claim, result in zip(latest["claims"], reports[-1].results, strict=True):
        claim["shown"] = _shown(result)
    trend = [
        {
            "period": period_label(report),
            "as_of": report.reproducibility.as_of,
            "claims": {
                result.claim.name: {
                    key: claim_document(result)[key]
                    for key in ("effect", "interval", "verdict", "cohort", "other", "adjusted_p")
                }
                | {"shown": _shown(result)}
                for result in report.results
            },
        }
        for report in reports
    ]
    return position, {"file": str(file), "report": latest, "trend": trend}


# --- running it in a child process -----------------------------------------------------------


def _child_main(pipe: Connection, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        outcome: tuple[str, Any] = ("ok", function(*args))
    except Exception as exc:  # the parent reports it; the child only passes it on
        outcome = ("error", str(exc) or type(exc).__name__)
    pipe.send(outcome)
    pipe.close()


async def run_in_child(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` in a fresh (spawned) process; its result, or RuntimeError with why not.

    Cancelling the caller ends the child.
    """
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_child_main, args=(sending, function, args), daemon=True)
    child.start()
    sending.close()
    try:
        status, value = await asyncio.to_thread(_receive, receiving)
    finally:
        if child.is_alive():
            child.terminate()  # also ends a thread still waiting in _receive (end of file)
        await asyncio.to_thread(child.join, 5)
        receiving.close()
    if status != "ok":
        raise RuntimeError(value)
    return value


def _receive(pipe: Connection) -> tuple[str, Any]:
    try:
        received: tuple[str, Any] = pipe.recv()
    except (EOFError, OSError):
        return "error", "the computation ended without an answer"
    return received


# --- the cache -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Derived:
    """A computed document, the archive position it was computed at, and how long it took."""

    position: Position
    document: dict[str, Any]
    seconds: float


class DerivedView:
    """The latest document of one derived view, recomputed as the archive moves on.

    `compute` runs the computation (in a child) and returns (position, document);
    `turns` lets only one computation of any view run at a time.
    """

    def __init__(
        self,
        name: str,
        compute: Callable[[], Any],
        turns: asyncio.Semaphore,
        min_interval_s: float = 60.0,
    ) -> None:
        self.name = name
        self._compute = compute
        self._turns = turns
        self._min_interval_s = min_interval_s
        self.latest: Derived | None = None
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = -float("inf")

    @property
    def computing(self) -> bool:
        """Whether a computation is under way."""
        return self._task is not None and not self._task.done()

    def refresh(self, position: Position | None = None) -> None:
        """Start a computation unless one runs, the latest is at `position`, or it is too soon."""
        if self.computing or (self.latest is not None and self.latest.position == position):
            return
        if self.latest is not None and time.monotonic() - self._started < self._min_interval_s:
            return
        self._started = time.monotonic()
        self._task = asyncio.create_task(self._run(), name=f"dashboard-{self.name}")

    def state(self, position: Position) -> str:
        """'fresh', 'stale' (an older archive position; a newer one may be computing),
        'computing' (nothing yet) or 'failed'."""
        if self.latest is None:
            return "computing" if self.computing or self.error is None else "failed"
        return "fresh" if self.latest.position == position else "stale"

    async def _run(self) -> None:
        async with self._turns:
            started = time.monotonic()
            try:
                position, document = await self._compute()
            except RuntimeError as exc:
                self.error = str(exc)
                log.warning("dashboard_view_failed", view=self.name, error=self.error)
                return
            seconds = time.monotonic() - started
            self.latest = Derived(tuple(map(tuple, position)), document, seconds)
            self.error = None
            log.info("dashboard_view_computed", view=self.name, seconds=round(seconds, 2))

    async def stop(self) -> None:
        """Cancel a computation under way (its child process ends)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
