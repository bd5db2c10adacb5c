"""The canonical lines of a value stream, and the content hash both folds compute over them.

`canonical_lines` writes a folded value stream (Python) as lines; the SQL replay writes
the very same lines (`projections.archive.fold_sql.lines.canonical_lines_sql`), so the
two content hashes are equal exactly when the two folds agree on every deal, stage,
visit, touch and stall.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from projections.deal.totals import Totals
from projections.deal.value_stream import DealValueStream
from projections.intervals import MICROSECOND, epoch_us

__all__ = ["SEP", "TOUCH_KINDS", "canonical_lines", "deal_digest", "streams_hash"]

SEP = "\x1f"
"""Between the fields of a canonical line (ids and names never hold it)."""

TOUCH_KINDS = ("call", "email", "meeting", "quote")
"""The touch kinds, in the order their counts are written."""


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


def _amount(amount: Decimal | None) -> str:
    return "" if amount is None else str(amount)


def canonical_lines(stream: DealValueStream) -> list[str]:
    """A value stream as the lines its content hash covers: the deal, its stages, visits,
    touches and stalls, in the fold's order; times in microseconds since the epoch.

    SQL twin: projections.archive.fold_sql.lines.canonical_lines_sql.
    """
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
    """sha256 of one deal's canonical lines.

    SQL twin: projections.archive.fold_sql.lines.deal_digests_sql.
    """
    return hashlib.sha256("\n".join(canonical_lines(stream)).encode()).hexdigest()


def streams_hash(digests: Iterable[tuple[str, str]]) -> str:
    """The content hash of many deals from (deal_id, digest) pairs, in any order."""
    text = "".join(f"{deal_id}{SEP}{digest}\n" for deal_id, digest in sorted(digests))
    return hashlib.sha256(text.encode()).hexdigest()
