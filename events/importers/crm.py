"""The optional mapping of a CRM export (Salesforce, HubSpot): time zone, stages, value names.

A TOML file, every key optional::

    id_prefix = "sf"                 # ids become sf:<record id>
    timezone = "Europe/Berlin"       # for times without an offset, and for dates
    date_time = "12:00"              # where a date without a time of day lands
    time_formats = ["%d/%m/%Y %H:%M"] # tried after ISO 8601
    opening_stage = "Prospecting"    # the stage a deal opens in, when the export does not say
    currency = "EUR"                 # when the export has no currency column
    default_meeting_kind = "demo"    # a meeting whose type is not in [meeting_kinds]

    [stages]            # export stage -> Gemba stage, or deal_won / deal_lost
    "Value Proposition" = "Proposal"
    [call_outcomes]     # -> connected, no_answer, voicemail, busy
    "Left VM" = "voicemail"
    [meeting_kinds]     # -> discovery, demo, negotiation, internal
    "Intro call" = "discovery"
    [meeting_outcomes]  # -> held, no_show, rescheduled
    [response_kinds]    # campaign type or member status -> ad_click, webinar, ...
    "Trade Show" = "event_visit"

Names are matched without regard to case or surrounding spaces. Stages not listed
keep their name (identity), except the closing ones: `Closed Won` / `closedwon`
close the deal as won, `Closed Lost` / `closedlost` as lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, time, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import Any

from events.importers.errors import MappingInvalid
from events.importers.rows import TimeRules
from events.importers.values import zone
from events.models import CallOutcome, MeetingKind, MeetingOutcome, ResponseKind
from events.toml_text import TomlUnreadable, parse_toml

__all__ = ["CLOSED", "CrmMapping", "load_crm_mapping", "read_toml"]

WON, LOST = "deal_won", "deal_lost"
CLOSED = (WON, LOST)

DEFAULT_STAGES = {"closed won": WON, "closedwon": WON, "closed lost": LOST, "closedlost": LOST}
DEFAULT_CALL_OUTCOMES = {
    "connected": "connected", "reached": "connected", "completed": "connected",
    "answered": "connected", "left voicemail": "voicemail", "voicemail": "voicemail",
    "left message": "voicemail", "left live message": "voicemail", "no answer": "no_answer",
    "no_answer": "no_answer", "wrong number": "no_answer", "busy": "busy",
}  # fmt: skip
DEFAULT_MEETING_OUTCOMES = {
    "completed": "held", "held": "held", "scheduled": "held", "no show": "no_show",
    "no_show": "no_show", "rescheduled": "rescheduled", "canceled": "rescheduled",
    "cancelled": "rescheduled",
}  # fmt: skip
DEFAULT_MEETING_KINDS = {kind.value: kind.value for kind in MeetingKind}
DEFAULT_RESPONSE_KINDS = {
    "webinar": "webinar", "advertisement": "ad_click", "banner ads": "ad_click",
    "ad": "ad_click", "email": "email_click", "trade show": "event_visit",
    "conference": "event_visit", "seminar": "event_visit", "event": "event_visit",
    "content": "content_download", "download": "content_download",
    "form": "form_submission", "form submission": "form_submission",
}  # fmt: skip

_KEYS = {
    "id_prefix", "timezone", "date_time", "time_formats", "opening_stage", "currency",
    "default_meeting_kind", "stages", "call_outcomes", "meeting_kinds", "meeting_outcomes",
    "response_kinds",
}  # fmt: skip


def _key(name: str) -> str:
    return " ".join(name.split()).lower()


def _table(
    given: Any, defaults: Mapping[str, str], allowed: type[StrEnum] | None, name: str
) -> dict[str, str]:
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise MappingInvalid(f"[{name}] must be a table of names to names")
    merged = dict(defaults)
    for source, target in given.items():
        if not isinstance(target, str):
            raise MappingInvalid(f"[{name}] {source!r} must map to a string")
        if allowed is not None and target not in {member.value for member in allowed}:
            choices = ", ".join(member.value for member in allowed)
            raise MappingInvalid(f"[{name}] {source!r} = {target!r}: must be one of {choices}")
        merged[_key(source)] = target
    return merged


@dataclass(frozen=True)
class CrmMapping:
    """How a CRM export's values become Gemba's; `CrmMapping("sf")` is every default."""

    id_prefix: str
    times: TimeRules = field(default_factory=TimeRules)
    opening_stage: str = "Prospecting"
    currency: str = "USD"
    default_meeting_kind: str = "demo"
    stages: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_STAGES))
    call_outcomes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CALL_OUTCOMES))
    meeting_kinds: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MEETING_KINDS))
    meeting_outcomes: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_MEETING_OUTCOMES)
    )
    response_kinds: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_RESPONSE_KINDS))

    def stage(self, name: str) -> str:
        """The Gemba stage of an export's stage name (deal_won / deal_lost for closing ones)."""
        return self.stages.get(_key(name), name.strip())

    def call_outcome(self, name: str) -> str | None:
        """A call outcome for a disposition, or None when the mapping does not know it."""
        return self.call_outcomes.get(_key(name))

    def meeting_kind(self, name: str) -> str:
        """A meeting kind for a meeting type; unknown types are `default_meeting_kind`."""
        return self.meeting_kinds.get(_key(name), self.default_meeting_kind)

    def meeting_outcome(self, name: str) -> str | None:
        """A meeting outcome for a status, or None when the mapping does not know it."""
        return self.meeting_outcomes.get(_key(name))

    def response_kind(self, name: str) -> str | None:
        """A campaign response kind for a campaign type or member status, or None."""
        return self.response_kinds.get(_key(name))


def read_toml(path: Path) -> dict[str, Any]:
    """A mapping file's content, or MappingInvalid saying why it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingInvalid(f"cannot read the mapping {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise MappingInvalid(f"the mapping {path} is not UTF-8 text: {exc}") from None
    try:
        return parse_toml(text)
    except TomlUnreadable as exc:
        raise MappingInvalid(f"the mapping {path} is not valid TOML: {exc}") from None


def parse_clock(text: Any, name: str) -> time:
    """A time of day `HH:MM` from a mapping key."""
    try:
        return time.fromisoformat(str(text))
    except ValueError:
        raise MappingInvalid(f"{name} = {text!r}: expected a time of day such as 09:00") from None


def time_rules(document: Mapping[str, Any]) -> TimeRules:
    """The `timezone`, `time_formats` and `date_time` keys of a mapping."""
    tz: tzinfo = zone(str(document["timezone"])) if "timezone" in document else UTC
    formats = document.get("time_formats", [])
    if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
        raise MappingInvalid("time_formats must be a list of strptime patterns")
    at = parse_clock(document.get("date_time", "00:00"), "date_time")
    return TimeRules(tz, tuple(formats), at)


def load_crm_mapping(path: Path | None, id_prefix: str) -> CrmMapping:
    """The mapping in `path` over the defaults (all defaults when `path` is None)."""
    if path is None:
        return CrmMapping(id_prefix)
    document = read_toml(path)
    unknown = sorted(set(document) - _KEYS)
    if unknown:
        raise MappingInvalid(f"the mapping {path} has unknown keys: {', '.join(unknown)}")
    kind = str(document.get("default_meeting_kind", "demo"))
    if kind not in {member.value for member in MeetingKind}:
        raise MappingInvalid(f"default_meeting_kind = {kind!r} is not a meeting kind")
    return CrmMapping(
        id_prefix=str(document.get("id_prefix", id_prefix)),
        times=time_rules(document),
        opening_stage=str(document.get("opening_stage", "Prospecting")),
        currency=str(document.get("currency", "USD")),
        default_meeting_kind=kind,
        stages=_table(document.get("stages"), DEFAULT_STAGES, None, "stages"),
        call_outcomes=_table(
            document.get("call_outcomes"), DEFAULT_CALL_OUTCOMES, CallOutcome, "call_outcomes"
        ),
        meeting_kinds=_table(
            document.get("meeting_kinds"), DEFAULT_MEETING_KINDS, MeetingKind, "meeting_kinds"
        ),
        meeting_outcomes=_table(
            document.get("meeting_outcomes"),
            DEFAULT_MEETING_OUTCOMES,
            MeetingOutcome,
            "meeting_outcomes",
        ),
        response_kinds=_table(
            document.get("response_kinds"), DEFAULT_RESPONSE_KINDS, ResponseKind, "response_kinds"
        ),
    )
