"""XES event logs (IEEE 1849, the process-mining standard; plain or gzip) as events.

Streamed with `iterparse`, one trace in memory at a time. A trace is a deal (its
`concept:name`); each event's `concept:name` is an activity, mapped by a TOML file to
an event type; `time:timestamp` keeps its UTC offset. A START and the next COMPLETE
of the same activity in a trace make one touch: a call lasting from one to the other,
a meeting with that slot (offsets make this right across a daylight-saving change).
A lone COMPLETE is a touch at its time (calls: `duration_seconds` from the mapping, or
0; meetings: `default_minutes` before it). Other lifecycle transitions are skipped; a
START never completed is refused. An event carrying `gemba:event` (written by
`gemba export xes`) is that Gemba event, whole: such logs import without a mapping.

    id_prefix = "xes"                # ids: xes:<case>, xes:account:<...>, xes:rep:<resource>
    timezone = "UTC"                 # for timestamps without an offset
    default_minutes = 30             # length of a meeting logged by its COMPLETE alone
    unmapped = "refuse"              # or "skip": activities not listed below
    [case]
    account = "account"              # trace or event attribute naming the account;
    missing_account = "case"         # without it, the case is its own account ("refuse")
    [activities."Call customer"]     # activity (concept:name) -> event type and fields
    type = "call"
    direction = "outbound"
    outcome = "connected"
    [activities."Won"]
    type = "deal_won"
    attributes = { amount = "amount" }   # event field = XES attribute (event or trace)

Event ids: `identity:id` when the event has one, else `<prefix>:<case>:<index>` (the
index of the COMPLETE in its trace), so the same log gives the same ids.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from events.codec import decode
from events.errors import EventRejected
from events.importers.crm import read_toml, time_rules
from events.importers.errors import MappingInvalid, SourceUnreadable
from events.importers.outcome import ImportItem, Refused, Skipped
from events.importers.rows import TimeRules
from events.importers.values import BadValue, build, ident
from events.models import EVENT_TYPES

__all__ = ["Activity", "XesMapping", "load_xes_mapping", "xes_events"]

GEMBA_EVENT = "gemba:event"
_TOP = {"id_prefix", "timezone", "default_minutes", "unmapped", "case", "activities"}
_TOP |= {"time_formats", "date_time"}


@dataclass(frozen=True)
class Activity:
    """What one activity becomes: an event type, constant fields, fields from attributes."""

    type: str
    constants: Mapping[str, Any] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class XesMapping:
    """Activities to event types, and where the account comes from."""

    id_prefix: str = "xes"
    times: TimeRules = field(default_factory=TimeRules)
    activities: Mapping[str, Activity] = field(default_factory=dict)
    account_attribute: str = "account"
    case_is_account: bool = True
    skip_unmapped: bool = False
    default_minutes: int = 30

    def activity(self, name: str) -> Activity | None:
        """The activity's rule (exact name first, then ignoring case)."""
        found = self.activities.get(name)
        if found is None:
            found = self.activities.get(name.strip().casefold())
        return found


def _activity(name: str, table: Any) -> Activity:
    if not isinstance(table, dict) or table.get("type") not in EVENT_TYPES:
        raise MappingInvalid(
            f"[activities.{name!r}] needs type = one of {', '.join(sorted(EVENT_TYPES))}"
        )
    attributes = table.get("attributes", {})
    if not isinstance(attributes, dict):
        raise MappingInvalid(f"[activities.{name!r}] attributes must map fields to XES keys")
    constants = {k: v for k, v in table.items() if k not in {"type", "attributes"}}
    return Activity(str(table["type"]), constants, {str(k): str(v) for k, v in attributes.items()})


def load_xes_mapping(path: Path | None) -> XesMapping:
    """Read an XES mapping (None: no activities; only Gemba's own exports import)."""
    if path is None:
        return XesMapping()
    document = read_toml(path)
    unknown = sorted(set(document) - _TOP)
    if unknown:
        raise MappingInvalid(f"the mapping {path} has unknown keys: {', '.join(unknown)}")
    case = document.get("case", {})
    activities: dict[str, Activity] = {}
    for name, table in document.get("activities", {}).items():
        rule = _activity(name, table)
        activities[name] = rule
        activities.setdefault(name.strip().casefold(), rule)
    unmapped = document.get("unmapped", "refuse")
    if unmapped not in {"refuse", "skip"}:
        raise MappingInvalid(f'unmapped = {unmapped!r}: use "refuse" or "skip"')
    missing = case.get("missing_account", "case")
    if missing not in {"case", "refuse"}:
        raise MappingInvalid(f'[case] missing_account = {missing!r}: use "case" or "refuse"')
    return XesMapping(
        id_prefix=str(document.get("id_prefix", "xes")),
        times=time_rules(document),
        activities=activities,
        account_attribute=str(case.get("account", "account")),
        case_is_account=missing == "case",
        skip_unmapped=unmapped == "skip",
        default_minutes=int(document.get("default_minutes", 30)),
    )


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _attributes(element: ET.Element) -> dict[str, str]:
    """The element's own attributes (key -> value), not those nested in lists or containers."""
    return {
        child.attrib["key"]: child.attrib.get("value", "")
        for child in element
        if "key" in child.attrib and _local(child.tag) not in {"event", "trace"}
    }


@dataclass
class _Trace:
    number: int
    attributes: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, str]] = field(default_factory=list)
    outside: bool = False
    """Events found outside any trace (not valid XES): refused, one by one."""


def _traces(stream: IO[bytes], source: str) -> Iterator[_Trace]:
    """Each trace with its events' attributes; elements are cleared as soon as read."""
    number = 0
    root: ET.Element | None = None
    events: list[dict[str, str]] = []
    in_trace = False
    try:
        for kind, element in ET.iterparse(stream, events=("start", "end")):
            tag = _local(element.tag)
            if kind == "start":
                root = element if root is None else root
                in_trace = in_trace or tag == "trace"
                continue
            if tag == "event" and not in_trace:
                yield _Trace(0, events=[_attributes(element)], outside=True)
                element.clear()
            elif tag == "event":
                events.append(_attributes(element))
                element.clear()
            elif tag == "trace":
                in_trace = False
                number += 1
                yield _Trace(number, _attributes(element), events)
                events = []
                element.clear()
                if root is not None:
                    root.clear()
    except ET.ParseError as exc:
        line, column = exc.position
        raise SourceUnreadable(f"{source} line {line}, column {column}: not XES: {exc}") from None


def xes_events(stream: IO[bytes], source: str, mapping: XesMapping) -> Iterator[ImportItem]:
    """Every event of every trace, as Gemba events, or refused / skipped with the reason."""
    for trace in _traces(stream, source):
        yield from _trace_events(trace, source, mapping)


def _trace_events(trace: _Trace, source: str, mapping: XesMapping) -> Iterator[ImportItem]:
    case = trace.attributes.get("concept:name", "").strip()
    if trace.outside:
        yield Refused(source, "outside any trace", "an event outside a trace: no deal to put it in")
        return
    if not case:
        for index, _ in enumerate(trace.events):
            where = f"trace #{trace.number}, event {index}"
            yield Refused(source, where, "the trace has no concept:name: cannot name the deal")
        return
    pending: dict[str, deque[tuple[int, datetime]]] = {}
    for index, attributes in enumerate(trace.events):
        where = f"trace {case}, event {index}"
        try:
            item = _one(trace, case, index, attributes, pending, source, where, mapping)
        except BadValue as exc:
            item = Refused(source, where, str(exc))
        if item is not None:
            yield item
    for name, starts in pending.items():
        for index, _ in starts:
            yield Refused(
                source, f"trace {case}, event {index}", f"START of {name!r} without a COMPLETE"
            )


def _one(
    trace: _Trace,
    case: str,
    index: int,
    attributes: dict[str, str],
    pending: dict[str, deque[tuple[int, datetime]]],
    source: str,
    where: str,
    mapping: XesMapping,
) -> ImportItem | None:
    if GEMBA_EVENT in attributes:
        try:
            return decode(attributes[GEMBA_EVENT])
        except EventRejected as exc:
            return Refused(source, where, f"gemba:event is not a valid event: {exc}")
    name = attributes.get("concept:name", "").strip()
    if not name:
        raise BadValue("the event has no concept:name (activity)")
    rule = mapping.activity(name)
    if rule is None and not mapping.activities:
        return Refused(
            source,
            where,
            f"activity {name!r}: no --mapping of activities given (only logs written by "
            "`gemba export xes` import without one)",
        )
    if rule is None:
        reason = f"activity {name!r} is not in the mapping's [activities]"
        return (
            Skipped(source, where, reason)
            if mapping.skip_unmapped
            else Refused(source, where, reason)
        )
    stamp = attributes.get("time:timestamp", "")
    if not stamp:
        raise BadValue("the event has no time:timestamp")
    at = mapping.times.parse(stamp)
    transition = attributes.get("lifecycle:transition", "complete").strip().lower()
    if transition == "start":
        pending.setdefault(name, deque()).append((index, at))
        return None
    if transition != "complete":
        return Skipped(source, where, f"lifecycle {transition} is not a touch")
    starts = pending.get(name)
    started = starts.popleft()[1] if starts else None
    lookup = {**trace.attributes, **attributes}
    return _event(rule, case, index, attributes, lookup, started, at, source, where, mapping)


def _event(
    rule: Activity,
    case: str,
    index: int,
    event: Mapping[str, str],
    lookup: Mapping[str, str],
    started: datetime | None,
    at: datetime,
    source: str,
    where: str,
    mapping: XesMapping,
) -> ImportItem:
    prefix = mapping.id_prefix
    fields: dict[str, Any] = dict(rule.constants)
    fields.update({name: lookup[key] for name, key in rule.attributes.items() if key in lookup})
    account = lookup.get(mapping.account_attribute, "").strip()
    if not account and not mapping.case_is_account:
        raise BadValue(f"no {mapping.account_attribute!r} attribute: the account is unknown")
    resource = lookup.get("org:resource", "").strip()
    identity = event.get("identity:id", "").strip()
    fields.update(
        event_id=ident(prefix, identity) if identity else ident(prefix, case, str(index)),
        deal_id=ident(prefix, case),
        account_id=ident(prefix, "account", account or case),
        occurred_at=started or at,
    )
    if resource:
        fields.setdefault("actor_id", ident(prefix, "rep", resource))
    if rule.type == "deal_opened" and "actor_id" in fields:
        fields.setdefault("owner_id", fields["actor_id"])
    if rule.type == "call" and started is not None:
        fields["duration_seconds"] = round((at - started).total_seconds())
    elif rule.type == "call":
        fields.setdefault("duration_seconds", 0)
    elif rule.type == "meeting":
        start = started or at - timedelta(minutes=mapping.default_minutes)
        fields.update(started_at=start, ended_at=at, occurred_at=start)
    else:
        fields["occurred_at"] = at
    return build(EVENT_TYPES[rule.type], source, where, fields)
