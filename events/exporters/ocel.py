"""Writing the event log as OCEL 2.0 JSON: events related to deals, accounts, reps, contacts
and campaigns, the objects of a sales process.

Object ids are `<type>:<Gemba id>` (a deal and an account may share an id in Gemba);
each deal relates to its account, and carries its owner, product and segment from
`deal_opened`, and its stage and status over time. Event types are Gemba's event
types; their attributes are the event's own fields (times with their offsets).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import IO, Any

import orjson

from events.models import EventBase

__all__ = ["write_ocel"]

_BASE = {"event_id", "occurred_at", "schema_version", "type", "account_id", "deal_id"}
_BASE |= {"contact_id", "actor_id", "campaign_id"}
_RELATED = (
    ("deal_id", "deal", "deal"),
    ("account_id", "account", "account"),
    ("contact_id", "contact", "contact"),
    ("actor_id", "rep", "rep"),
    ("owner_id", "rep", "owner"),
    ("campaign_id", "campaign", "campaign"),
)
_EPOCH = "1970-01-01T00:00:00Z"


def _typed(value: Any) -> tuple[str, Any]:
    """(OCEL attribute type, JSON value)."""
    if isinstance(value, bool):
        return "boolean", value
    if isinstance(value, int):
        return "integer", value
    if isinstance(value, Decimal | float):
        return "float", float(value)
    if isinstance(value, datetime):
        return "time", value.isoformat()
    if isinstance(value, Enum):
        return "string", str(value.value)
    return "string", str(value)


class _Objects:
    """The objects met so far, with their attributes over time and their relations."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.attribute_types: dict[str, dict[str, str]] = {}

    def add(self, kind: str, gemba_id: str) -> str:
        object_id = f"{kind}:{gemba_id}"
        if object_id not in self.objects:
            self.objects[object_id] = {
                "id": object_id, "type": kind, "attributes": [], "relationships": [],
            }  # fmt: skip
            self.attribute_types.setdefault(kind, {})
        return object_id

    def set(self, object_id: str, name: str, value: Any, at: str) -> None:
        kind, json_value = _typed(value)
        target = self.objects[object_id]
        self.attribute_types[target["type"]].setdefault(name, kind)
        target["attributes"].append({"name": name, "time": at, "value": json_value})

    def relate(self, source: str, target: str, qualifier: str) -> None:
        links = self.objects[source]["relationships"]
        link = {"objectId": target, "qualifier": qualifier}
        if link not in links:
            links.append(link)


def _deal_attributes(objects: _Objects, deal: str, event: EventBase) -> None:
    kind = str(getattr(event, "type", ""))
    at = event.occurred_at.isoformat()
    if kind == "deal_opened":
        for name in ("owner_id", "stage", "product", "segment", "industry", "amount"):
            value = getattr(event, name, None)
            if value is not None:
                objects.set(deal, name, value, _EPOCH if name != "stage" else at)
        objects.set(deal, "status", "open", at)
    elif kind == "stage_changed":
        objects.set(deal, "stage", getattr(event, "to_stage", ""), at)
    elif kind in {"deal_won", "deal_lost"}:
        objects.set(deal, "status", kind.removeprefix("deal_"), at)


def write_ocel(events: Iterable[EventBase], sink: IO[bytes]) -> tuple[int, int]:
    """Write the OCEL 2.0 JSON document; return (objects, events) written."""
    objects = _Objects()
    event_types: dict[str, dict[str, str]] = {}
    documents = []
    for event in sorted(events, key=lambda e: (e.occurred_at, e.event_id)):
        kind = str(getattr(event, "type", type(event).__name__))
        types = event_types.setdefault(kind, {})
        attributes = []
        for name, value in event:
            if name in _BASE or value is None:
                continue
            attribute_type, json_value = _typed(value)
            types.setdefault(name, attribute_type)
            attributes.append({"name": name, "value": json_value})
        relationships = []
        for field_name, object_type, qualifier in _RELATED:
            value = getattr(event, field_name, None)
            if value:
                object_id = objects.add(object_type, value)
                relationships.append({"objectId": object_id, "qualifier": qualifier})
        if event.deal_id:
            deal = objects.add("deal", event.deal_id)
            objects.relate(deal, objects.add("account", event.account_id), "account")
            _deal_attributes(objects, deal, event)
        documents.append(
            {
                "id": event.event_id, "type": kind, "time": event.occurred_at.isoformat(),
                "attributes": attributes, "relationships": relationships,
            }
        )  # fmt: skip
    document = {
        "objectTypes": [
            {"name": name, "attributes": [{"name": k, "type": v} for k, v in sorted(a.items())]}
            for name, a in sorted(objects.attribute_types.items())
        ],
        "eventTypes": [
            {"name": name, "attributes": [{"name": k, "type": v} for k, v in sorted(a.items())]}
            for name, a in sorted(event_types.items())
        ],
        "objects": list(objects.objects.values()),
        "events": documents,
    }
    sink.write(orjson.dumps(document))
    return len(objects.objects), len(documents)
