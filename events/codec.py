"""Bytes to events and back, upcasting older schema versions on the way in."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import orjson
from pydantic import TypeAdapter, ValidationError

from events.errors import EventRejected, FieldProblem
from events.models import CURRENT_SCHEMA_VERSION, EVENT_TYPES, Event, EventBase

__all__ = [
    "MAX_EVENT_BYTES",
    "EventCodec",
    "LineRefused",
    "Upcaster",
    "decode",
    "decode_jsonl",
    "encode",
    "json_schema",
    "problems_from",
]

MAX_EVENT_BYTES = 64 * 1024
"""Largest encoded event accepted; anything bigger is refused, not truncated."""

Upcaster: TypeAlias = Callable[[dict[str, Any]], dict[str, Any]]
"""One small step: an event dict at version N to the same event at version N + 1."""

_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def problems_from(error: ValidationError) -> list[FieldProblem]:
    """Turn pydantic's report into field/reason pairs a user can act on."""
    problems = []
    for item in error.errors(include_url=False):
        location = [str(part) for part in item["loc"]]
        # The discriminated union puts the event type first in the path; drop it.
        if location and location[0] in EVENT_TYPES:
            location = location[1:]
        where = ".".join(location) or "(event)"
        if item["type"] in {"union_tag_not_found", "union_tag_invalid"}:
            where = "type"
        reason = item["msg"]
        if reason.startswith("Value error, "):
            reason = reason.removeprefix("Value error, ")
        problems.append(FieldProblem(where, reason))
    return problems


@dataclass(frozen=True)
class EventCodec:
    """Decodes JSON bytes into events, applying registered upcasters first.

    `upcasters` maps (event type, version) to the step that lifts that version
    by one; the chain runs until the event reaches `current_version`.
    """

    upcasters: Mapping[tuple[str, int], Upcaster] = field(default_factory=dict)
    current_version: int = CURRENT_SCHEMA_VERSION
    max_bytes: int = MAX_EVENT_BYTES

    def decode(self, raw: bytes | str) -> Event:
        """Parse and validate one event; raise EventRejected naming every bad field."""
        data = raw.encode() if isinstance(raw, str) else raw
        if len(data) > self.max_bytes:
            raise EventRejected(
                [FieldProblem("(event)", f"{len(data)} bytes is over the {self.max_bytes} limit")]
            )
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise EventRejected([FieldProblem("(event)", f"not valid JSON: {exc}")]) from None
        return self.from_dict(document)

    def from_dict(self, document: object) -> Event:
        """Validate an already-parsed JSON document as an event."""
        if not isinstance(document, dict):
            kind = type(document).__name__
            raise EventRejected([FieldProblem("(event)", f"expected a JSON object, got {kind}")])
        upcast = self.upcast(document)
        try:
            return _ADAPTER.validate_python(upcast)
        except ValidationError as exc:
            raise EventRejected(problems_from(exc)) from None

    def upcast(self, document: dict[str, Any]) -> dict[str, Any]:
        """Lift an event dict from its schema version to the current one."""
        kind = document.get("type")
        version = document.get("schema_version", self.current_version)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise EventRejected([FieldProblem("schema_version", "must be a positive integer")])
        if version > self.current_version:
            raise EventRejected(
                [
                    FieldProblem(
                        "schema_version",
                        f"version {version} is newer than this Gemba knows "
                        f"({self.current_version}); upgrade Gemba to read it",
                    )
                ]
            )
        while version < self.current_version:
            step = self.upcasters.get((str(kind), version))
            if step is None:
                raise EventRejected(
                    [FieldProblem("schema_version", f"no upcaster for {kind} version {version}")]
                )
            document = step(dict(document))
            version += 1
            document["schema_version"] = version
        return document

    def decode_many(self, lines: Iterable[bytes | str]) -> Iterator[Event | EventRejected]:
        """Decode each line; a bad line yields its EventRejected instead of stopping."""
        for line in lines:
            try:
                yield self.decode(line)
            except EventRejected as exc:
                yield exc


_DEFAULT = EventCodec()


@dataclass(frozen=True, slots=True)
class LineRefused:
    """A line of JSON-lines input that is not a valid event, and why."""

    line: int
    error: EventRejected

    def __str__(self) -> str:
        return f"line {self.line}: {self.error}"


def decode_jsonl(
    lines: Iterable[bytes | str], codec: EventCodec = _DEFAULT
) -> Iterator[tuple[int, Event | LineRefused]]:
    """Decode JSON lines, numbering from 1; blank lines are skipped, bad ones reported."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, codec.decode(line)
        except EventRejected as exc:
            yield number, LineRefused(number, exc)


def decode(raw: bytes | str) -> Event:
    """Decode one event with the default codec (current schema, no upcasters)."""
    return _DEFAULT.decode(raw)


def encode(event: EventBase) -> bytes:
    """Serialise an event to compact JSON; decode(encode(e)) == e."""
    return orjson.dumps(event.model_dump(mode="json", exclude_none=True))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of every event type, as one discriminated union."""
    return _ADAPTER.json_schema()
