"""The audit: recompute every partition's hash chain and name what was changed, removed,
inserted, reordered or never received; check the fold facts against the payloads."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from events import EventRejected, decode
from projections.archive.chain import (
    ChainHead,
    chain_hash,
    chain_link,
    genesis_hash,
    partition_heads,
)
from projections.archive.connection import Connection
from projections.archive.facts import FACTS_SELECT

__all__ = ["AuditFinding", "AuditReport", "Tampering", "verify_archive"]


class Tampering(StrEnum):
    """What verification found wrong with the archive."""

    CHANGED = "changed"
    REMOVED = "removed"
    INSERTED = "inserted"
    REORDERED = "reordered"
    NOT_ARCHIVED = "not-archived"


@dataclass(frozen=True, slots=True)
class AuditFinding:
    """One thing wrong, naming the event and where it is (or was)."""

    kind: Tampering
    event_id: str | None
    topic: str
    partition: int
    offset: int | None
    detail: str

    def __str__(self) -> str:
        what = self.event_id or "(unknown event)"
        where = f"{self.topic}[{self.partition}]" + (
            f"@{self.offset}" if self.offset is not None else ""
        )
        return f"{self.kind.value}: {what} at {where}: {self.detail}"


@dataclass(frozen=True)
class AuditReport:
    """The outcome of verifying the archive: partitions and events checked, findings."""

    partitions: int
    events: int
    findings: tuple[AuditFinding, ...]

    @property
    def intact(self) -> bool:
        """True when nothing was changed, removed, inserted, reordered or missed."""
        return not self.findings


@dataclass(frozen=True, slots=True)
class _ChainRow:
    event_id: str
    topic: str
    partition: int
    offset: int
    recorded_at: datetime
    previous_event_id: str | None
    payload: bytes
    chain_hash: str | None
    columns: tuple[Any, ...]

    def link(self, offset: int | None = None) -> bytes:
        at = self.offset if offset is None else offset
        return chain_link(
            self.topic, self.partition, at, self.recorded_at, self.previous_event_id, self.payload
        )


_COLUMNS = ("event_id", "type", "occurred_at", "deal_id", "account_id", "actor_id", "campaign_id")


def _columns_disagree(row: _ChainRow) -> str | None:
    """Why the row's indexed columns do not match its recorded event, if they do not."""
    try:
        event = decode(row.payload)
    except EventRejected as exc:
        return f"its payload is no longer a valid event ({exc})"
    recorded = (
        event.event_id,
        str(getattr(event, "type", "")),
        event.occurred_at,
        event.deal_id,
        event.account_id,
        event.actor_id,
        event.campaign_id,
    )
    wrong = [name for name, a, b in zip(_COLUMNS, row.columns, recorded, strict=True) if a != b]
    return f"column(s) {', '.join(wrong)} differ from the recorded event" if wrong else None


def _chain_rows(connection: Connection) -> dict[tuple[str, int], list[_ChainRow]]:
    rows = connection.execute(
        "SELECT event_id, source_topic, source_partition, source_offset, recorded_at, "
        "previous_event_id, payload, chain_hash, type, occurred_at, deal_id, account_id, "
        "actor_id, campaign_id FROM events ORDER BY source_topic, source_partition, source_offset"
    ).fetchall()
    chains: dict[tuple[str, int], list[_ChainRow]] = defaultdict(list)
    for row in rows:
        event_id, topic, partition, offset, recorded, previous, payload, hash_ = row[:8]
        chains[(str(topic), int(partition))].append(
            _ChainRow(
                str(event_id),
                str(topic),
                int(partition),
                int(offset),
                recorded,
                previous,
                str(payload).encode(),
                hash_,
                (event_id, *row[8:]),
            )
        )
    return chains


@dataclass
class _ChainCheck:
    """Verification of one partition's chain, walking it back from its head."""

    topic: str
    partition: int
    rows: list[_ChainRow]
    head: ChainHead | None
    findings: list[AuditFinding] = field(default_factory=list)

    def finding(
        self, kind: Tampering, row: _ChainRow | None, event_id: str | None, detail: str
    ) -> None:
        offset = row.offset if row is not None else None
        self.findings.append(
            AuditFinding(kind, event_id, self.topic, self.partition, offset, detail)
        )

    def run(self) -> list[AuditFinding]:
        walk = self._walk()
        on_chain = {row.event_id for row in walk}
        for row in self.rows:
            if row.event_id not in on_chain:
                detail = "no event of the chain links to it: the sink did not record it"
                self.finding(Tampering.INSERTED, row, row.event_id, detail)
        self._check_links(walk)
        return self.findings

    def _walk(self) -> list[_ChainRow]:
        """The chain from its first event to its head, following each event's link backwards."""
        by_id = {row.event_id: row for row in self.rows}
        position = {row.event_id: index for index, row in enumerate(self.rows)}
        expected = (
            self.head.event_id if self.head else (self.rows[-1].event_id if self.rows else None)
        )
        walk: list[_ChainRow] = []
        seen: set[str] = set()
        below = len(self.rows)  # position in offset order the walk has reached
        while expected is not None and expected not in seen:
            row = by_id.get(expected)
            if row is None:
                row = self._removed(expected, walk, below, seen)
                if row is None:
                    break
            seen.add(row.event_id)
            walk.append(row)
            below = min(below, position[row.event_id])
            expected = row.previous_event_id
        walk.reverse()
        return walk

    def _removed(
        self, event_id: str, walk: list[_ChainRow], below: int, seen: set[str]
    ) -> _ChainRow | None:
        """Report a removed event; go on from the event before it in offset order."""
        after = walk[-1] if walk else None
        before = next(
            (row for row in reversed(self.rows[:below]) if row.event_id not in seen), None
        )
        place = (
            f"between offsets {before.offset if before else '-'} and "
            f"{after.offset if after else '(head)'}"
        )
        self.finding(Tampering.REMOVED, None, event_id, f"the chain names it {place}; it is gone")
        return before

    def _check_links(self, walk: list[_ChainRow]) -> None:
        """Recompute each link from the one before; name what does not hash as recorded."""
        broken: list[tuple[_ChainRow, str]] = []
        for previous, row in zip([None, *walk], walk, strict=False):
            if row.previous_event_id != (previous.event_id if previous else None):
                continue  # a removed event sits between them: reported already
            start = previous.chain_hash if previous else genesis_hash(self.topic, self.partition)
            if start is None:
                continue
            if row.chain_hash != chain_hash(start, row.link()):
                broken.append((row, start))
            elif (wrong := _columns_disagree(row)) is not None:
                self.finding(Tampering.CHANGED, row, row.event_id, wrong)
        offsets = [row.offset for row, _ in broken]
        for row, start in broken:
            moved_from = next(
                (
                    o
                    for o in offsets
                    if o != row.offset and row.chain_hash == chain_hash(start, row.link(o))
                ),
                None,
            )
            if moved_from is not None:
                detail = f"recorded at offset {moved_from}, now at offset {row.offset}"
                self.finding(Tampering.REORDERED, row, row.event_id, detail)
            else:
                detail = "its content differs from what was recorded (hash mismatch)"
                self.finding(Tampering.CHANGED, row, row.event_id, detail)
        self._check_order(walk)

    def _check_order(self, walk: list[_ChainRow]) -> None:
        """Offsets must rise along the chain; name each event out of place not named yet."""
        reported = {f.event_id for f in self.findings if f.kind is Tampering.REORDERED}
        earlier: _ChainRow | None = None
        for row in walk:
            if row.event_id in reported:
                continue
            if earlier is not None and row.offset <= earlier.offset:
                detail = f"the chain puts it after {earlier.event_id} (offset {earlier.offset})"
                self.finding(Tampering.REORDERED, row, row.event_id, detail)
                continue
            earlier = row


def verify_archive(connection: Connection) -> AuditReport:
    """Recompute every partition's hash chain; name each event changed, removed, inserted or
    reordered, and every range of offsets the archive never received."""
    chains = _chain_rows(connection)
    heads = {
        key: head for key, head in partition_heads(connection).items() if head.hash is not None
    }
    findings: list[AuditFinding] = []
    for key in sorted(chains.keys() | heads.keys()):
        check = _ChainCheck(key[0], key[1], chains.get(key, []), heads.get(key))
        findings += check.run()
    for topic, partition, first, last in connection.execute(
        "SELECT * FROM offset_gaps ORDER BY ALL"
    ).fetchall():
        findings.append(
            AuditFinding(
                Tampering.NOT_ARCHIVED,
                None,
                topic,
                partition,
                first,
                f"offsets {first}..{last} were never received by the sink",
            )
        )
    named = {finding.event_id for finding in findings}
    findings += [f for f in _fold_fact_findings(connection) if f.event_id not in named]
    events = sum(len(rows) for rows in chains.values())
    return AuditReport(len(chains.keys() | heads.keys()), events, tuple(findings))


def _fold_fact_findings(connection: Connection) -> list[AuditFinding]:
    """The fold facts (what `gemba replay` reads) must say what the payloads say. (An event
    removed from the log leaves its facts behind: the chain names it, as removed.)"""
    rows = connection.execute(
        f"""WITH fresh AS ({FACTS_SELECT}),
        differ AS (
            SELECT event_id, 'changed' AS kind FROM (
                (SELECT * FROM fresh EXCEPT SELECT * FROM fold_facts)
                UNION ALL (SELECT * FROM fold_facts EXCEPT SELECT * FROM fresh))
            WHERE event_id IN (SELECT event_id FROM fresh)
              AND event_id IN (SELECT event_id FROM fold_facts)
            UNION
            SELECT event_id, 'removed' FROM fresh
                WHERE event_id NOT IN (SELECT event_id FROM fold_facts)
            UNION
            SELECT event_id, 'inserted' FROM fold_facts
                WHERE event_id NOT IN (SELECT event_id FROM fresh))
        SELECT d.event_id, d.kind, e.source_topic, e.source_partition, e.source_offset
        FROM differ d LEFT JOIN events e USING (event_id) ORDER BY d.event_id"""
    ).fetchall()
    details = {
        "changed": "its fold facts (what gemba replay reads) differ from its payload",
        "removed": "it has no fold facts: gemba replay would leave it out",
        "inserted": "fold facts for an event the log does not hold (or for another deal)",
    }
    findings = [
        AuditFinding(Tampering(kind), event_id, topic or "fold_facts", partition or 0, offset,
                     details[kind])
        for event_id, kind, topic, partition, offset in rows
    ]  # fmt: skip
    for (number,) in connection.execute(
        "SELECT deal_no FROM deal_numbers GROUP BY deal_no HAVING count(*) > 1 ORDER BY 1"
    ).fetchall():
        findings.append(
            AuditFinding(
                Tampering.CHANGED, None, "deal_numbers", 0, None,
                f"deal number {number} is given to more than one deal",
            )
        )  # fmt: skip
    return findings
