"""Writing the event log as XES (IEEE 1849): one trace per deal, one XES event per event.

Each event's `concept:name` is its activity (`activity()`: the type, with the outcome
or stage that a process map wants to tell apart), `lifecycle:transition` is complete,
`time:timestamp` is `occurred_at` with the offset it was recorded with, `org:resource`
the rep, `identity:id` the event id; `gemba:event` carries the whole event as JSON, so
`gemba import xes` reads the file back exactly. Events without a deal (campaign
responses) go to one trace per account, named `account:<account id>`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import IO
from xml.sax.saxutils import quoteattr

from events.codec import encode
from events.models import EventBase

__all__ = ["activity", "case_of", "write_xes"]

_HEAD = b"""<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1849-2016" xes.features="nested-attributes" xmlns="http://www.xes-standard.org/">
  <extension name="Concept" prefix="concept" uri="http://www.xes-standard.org/concept.xesext"/>
  <extension name="Time" prefix="time" uri="http://www.xes-standard.org/time.xesext"/>
  <extension name="Lifecycle" prefix="lifecycle" uri="http://www.xes-standard.org/lifecycle.xesext"/>
  <extension name="Organizational" prefix="org" uri="http://www.xes-standard.org/org.xesext"/>
  <extension name="Identity" prefix="identity" uri="http://www.xes-standard.org/identity.xesext"/>
  <global scope="trace">
    <string key="concept:name" value="__INVALID__"/>
  </global>
  <global scope="event">
    <string key="concept:name" value="__INVALID__"/>
    <string key="lifecycle:transition" value="complete"/>
  </global>
  <classifier name="Activity" keys="concept:name"/>
  <string key="concept:name" value="gemba"/>
"""


def activity(event: EventBase) -> str:
    """The activity name of an event: `call connected`, `meeting demo held`, `stage Proposal`."""
    kind = str(getattr(event, "type", type(event).__name__))
    if kind in {"deal_opened", "deal_won", "deal_lost"}:
        return kind.replace("_", " ")
    if kind == "stage_changed":
        return f"stage {getattr(event, 'to_stage', '')}"
    if kind == "meeting":
        return f"meeting {getattr(event, 'kind', '')} {getattr(event, 'outcome', '')}"
    detail = {"call": "outcome", "email": "direction", "quote": "status"}.get(kind, "kind")
    value = getattr(event, detail, None)
    label = "campaign" if kind == "campaign_response" else kind
    return f"{label} {value}" if value is not None else label


def case_of(event: EventBase) -> str:
    """The trace an event belongs to: its deal, else its account."""
    return event.deal_id or f"account:{event.account_id}"


def _attribute(tag: str, key: str, value: str) -> str:
    return f"<{tag} key={quoteattr(key)} value={quoteattr(value)}/>"


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _event_xml(event: EventBase) -> str:
    parts = [
        _attribute("string", "concept:name", activity(event)),
        _attribute("string", "lifecycle:transition", "complete"),
        _attribute("date", "time:timestamp", _stamp(event.occurred_at)),
        _attribute("id", "identity:id", event.event_id),
        _attribute("string", "gemba:type", str(getattr(event, "type", ""))),
        _attribute("string", "gemba:account", event.account_id),
        _attribute("string", "gemba:event", encode(event).decode()),
    ]
    if event.actor_id:
        parts.append(_attribute("string", "org:resource", event.actor_id))
    if event.campaign_id:
        parts.append(_attribute("string", "gemba:campaign", event.campaign_id))
    return "    <event>" + "".join(parts) + "</event>\n"


def write_xes(events: Iterable[EventBase], sink: IO[bytes]) -> tuple[int, int]:
    """Write the log to `sink`; return (traces, events) written.

    Traces are in case order, events in each by time (then id).
    """
    cases: dict[str, list[EventBase]] = defaultdict(list)
    for event in events:
        cases[case_of(event)].append(event)
    sink.write(_HEAD)
    written = 0
    for case in sorted(cases):
        trace = sorted(cases[case], key=lambda e: (e.occurred_at, e.event_id))
        first = trace[0]
        head = [_attribute("string", "concept:name", case)]
        head.append(_attribute("string", "gemba:account", first.account_id))
        sink.write(("  <trace>" + "".join(head) + "\n").encode())
        for event in trace:
            sink.write(_event_xml(event).encode())
            written += 1
        sink.write(b"  </trace>\n")
    sink.write(b"</log>\n")
    return len(cases), written
