"""HubSpot exports (CSV as the HubSpot UI exports them) as events.

Columns are HubSpot's labels; where exports differ, each name listed is tried in turn;
any other column is ignored. HubSpot writes times in the portal's zone without an
offset (`2024-03-05 14:22`): set `timezone` in the mapping (default UTC). Ids are
`<prefix>:<object>:<HubSpot id>` (prefix `hs`): HubSpot numbers each object type
apart, so the object names the number (`hs:deal:1234`, `hs:company:77`); owners given
by name are slugged (`hs:owner:jane-doe`).

- **Deals**: Record ID / Deal ID, Deal Stage, Create Date, Associated Company IDs /
  Associated Company ID / Company ID, Deal owner / Deal owner ID; optional Deal Name,
  Amount, Close Date, Currency, Closed Lost Reason, and `Date entered "<stage> (<pipeline>)"`
  columns (HubSpot's stage history). `deal_opened` at Create Date, in the first entered
  stage when the export has those columns, else in the current stage (open deals) or
  the mapping's opening stage (closed ones); a `stage_changed` for every later stage
  entered; `deal_won` / `deal_lost` at Close Date when the stage closes the deal.
  A deal associated with several companies belongs to the first.
- **Engagements / activities**: Engagement ID / Activity ID / Record ID, Engagement Type /
  Activity type (CALL, EMAIL, INCOMING_EMAIL, MEETING, NOTE, TASK), Timestamp / Activity
  date / Create Date, Associated Company IDs, Associated Deal IDs, Associated Contact IDs,
  Owner / Activity assigned to; calls: Call Direction, Call Outcome, Call Duration (ms)
  or Call Duration (seconds or HH:MM:SS); emails: Email Subject; meetings: Meeting Start
  Time, Meeting End Time, Meeting Outcome, Meeting Type. Notes and tasks are not customer
  touches: they are skipped, and counted by reason. The first associated deal is the deal.
- **Form / campaign submissions**: Submission ID (optional: else the id is a hash of
  the row's contact, form and time), Contact ID / Record ID, Associated Company ID(s),
  Campaign or Form Name / Form ID, Submitted At / Conversion Date, Form Type (through
  [response_kinds], default form_submission).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import IO

from events.importers.crm import CLOSED, WON, CrmMapping
from events.importers.outcome import ImportItem
from events.importers.rows import Row, each_row
from events.importers.values import BadValue, hashed_id, ident, slug
from events.models import (
    CallLogged,
    CampaignResponded,
    DealLost,
    DealOpened,
    DealWon,
    EmailLogged,
    MeetingLogged,
    StageChanged,
)

__all__ = ["deals", "engagements", "submissions"]

_ENTERED = re.compile(r'^Date entered "(?P<stage>.+?)(?: \((?P<pipeline>[^()]*)\))?"$')
COMPANY = ("Associated Company IDs", "Associated Company ID", "Company ID", "Associated Company")


def _first(value: str) -> str:
    """The first of a `;`-separated list of associated ids."""
    return value.split(";", maxsplit=1)[0].strip()


def _company(row: Row, mapping: CrmMapping) -> str:
    company = _first(row.text(*COMPANY))
    if not company:
        raise BadValue("no Associated Company ID: every event needs the customer account")
    return ident(mapping.id_prefix, "company", company)


def _owner(row: Row, mapping: CrmMapping, *names: str) -> str | None:
    """The owner's id: from an owner id column as is, from a name column slugged."""
    value = row.text(*names)
    if not value:
        return None
    return ident(mapping.id_prefix, "owner", value if value.isdigit() else slug(value))


def deals(stream: IO[bytes], source: str, mapping: CrmMapping) -> Iterator[ImportItem]:
    """Deal rows as deal_opened, the stages entered, and the close."""
    return each_row(stream, source, lambda row: _deal(row, mapping), mapping.times)


def _entered(row: Row, mapping: CrmMapping) -> list[tuple[datetime, str]]:
    """The stages the deal entered, by time, from `Date entered "..."` columns."""
    entered = []
    for column in row.values:
        match = _ENTERED.match(column)
        if match and row.text(column):
            at = row.optional_time(column)
            if at is not None:
                entered.append((at, mapping.stage(match["stage"])))
    return sorted(entered)


def _deal(row: Row, mapping: CrmMapping) -> list[ImportItem]:
    prefix = mapping.id_prefix
    record = row.required("Record ID", "Deal ID")
    deal = ident(prefix, "deal", record)
    opened_at = row.time("Create Date")
    owner = _owner(row, mapping, "Deal owner", "Deal owner ID", "Deal Owner")
    if owner is None:
        raise BadValue("no Deal owner: a deal needs the rep who owns it")
    common = {"deal_id": deal, "account_id": _company(row, mapping), "actor_id": owner}
    stage = mapping.stage(row.required("Deal Stage"))
    entered = [(at, name) for at, name in _entered(row, mapping) if name not in CLOSED]
    fallback = mapping.opening_stage if stage in CLOSED else stage
    opening = entered[0][1] if entered else fallback
    currency = row.text("Currency") or mapping.currency
    items: list[ImportItem] = [
        row.build(
            DealOpened, event_id=f"{deal}:opened", occurred_at=opened_at, **common,
            stage=opening, owner_id=owner, name=row.text("Deal Name") or None,
            amount=row.money("Amount"), currency=currency,
        )
    ]  # fmt: skip
    previous = opening
    for at, name in entered[1:]:
        if name == previous:
            continue
        items.append(
            row.build(
                StageChanged, event_id=ident(prefix, "deal", record, "entered", name),
                occurred_at=at, **common,
                from_stage=previous, to_stage=name,
            )
        )  # fmt: skip
        previous = name
    if stage not in CLOSED:
        return items
    closed_at = row.time("Close Date", why=": a closed deal needs its close date")
    if stage == WON:
        close = row.build(
            DealWon, event_id=f"{deal}:won", occurred_at=closed_at, **common,
            amount=row.money("Amount"), currency=currency,
        )  # fmt: skip
    else:
        reason = row.text("Closed Lost Reason") or row.text("Deal Stage")
        close = row.build(
            DealLost, event_id=f"{deal}:lost", occurred_at=closed_at, **common, reason=reason
        )
    return [*items, close]


def engagements(stream: IO[bytes], source: str, mapping: CrmMapping) -> Iterator[ImportItem]:
    """Calls, emails and meetings as touches; notes and tasks skipped."""
    return each_row(stream, source, lambda row: _engagement(row, mapping), mapping.times)


_NOT_TOUCHES = {"NOTE": "a note is not a customer touch", "TASK": "a task is not a touch"}


def _duration_seconds(row: Row) -> int:
    if row.text("Call Duration (ms)"):
        return round(row.whole_number("Call Duration (ms)") / 1000)
    text = row.text("Call Duration", "Call Duration (seconds)")
    if ":" in text:
        parts = [int(part) for part in text.split(":") if part.isdigit()]
        if len(parts) != len(text.split(":")):
            raise BadValue(f"Call Duration: {text!r} is not HH:MM:SS")
        seconds = 0
        for part in parts:
            seconds = seconds * 60 + part
        return seconds
    return row.whole_number("Call Duration", "Call Duration (seconds)")


def _engagement(row: Row, mapping: CrmMapping) -> list[ImportItem]:
    kind = row.required("Engagement Type", "Activity type", "Activity Type", "Type").upper()
    kind = kind.replace(" ", "_")
    if kind in _NOT_TOUCHES:
        return [row.skipped(_NOT_TOUCHES[kind])]
    at = row.time("Timestamp", "Activity date", "Activity Date", "Create Date")
    deal = _first(row.text("Associated Deal IDs", "Associated Deal ID", "Deal ID"))
    contact = _first(row.text("Associated Contact IDs", "Associated Contact ID", "Contact ID"))
    prefix = mapping.id_prefix
    ids = {
        "event_id": ident(
            prefix, "engagement", row.required("Engagement ID", "Activity ID", "Record ID")
        ),
        "occurred_at": at,
        "account_id": _company(row, mapping),
        "deal_id": ident(prefix, "deal", deal) if deal else None,
        "contact_id": ident(prefix, "contact", contact) if contact else None,
        "actor_id": _owner(row, mapping, "Owner", "Activity assigned to", "HubSpot Owner"),
    }
    if kind == "CALL":
        return [_call(row, mapping, ids)]
    if kind in {"EMAIL", "INCOMING_EMAIL", "FORWARDED_EMAIL"}:
        direction = "inbound" if kind == "INCOMING_EMAIL" else "outbound"
        subject = row.text("Email Subject", "Subject")[:500] or None
        return [row.build(EmailLogged, **ids, direction=direction, subject=subject)]
    if kind == "MEETING":
        start = row.optional_time("Meeting Start Time") or at
        end = row.time("Meeting End Time", why=": the meeting has no end")
        status = row.text("Meeting Outcome")
        outcome = mapping.meeting_outcome(status) if status else "held"
        if outcome is None:
            raise BadValue(f"Meeting Outcome {status!r} is not in [meeting_outcomes]")
        return [
            row.build(
                MeetingLogged, **{**ids, "occurred_at": start}, started_at=start, ended_at=end,
                kind=mapping.meeting_kind(row.text("Meeting Type")), outcome=outcome,
            )
        ]  # fmt: skip
    return [row.skipped(f"engagement type {kind} is not a customer touch")]


def _call(row: Row, mapping: CrmMapping, ids: dict[str, object]) -> ImportItem:
    direction = row.text("Call Direction").lower() or "outbound"
    seconds = _duration_seconds(row)
    status = row.text("Call Outcome", "Call Disposition")
    outcome = mapping.call_outcome(status) if status else None
    if status and outcome is None:
        raise BadValue(f"Call Outcome {status!r} is not in [call_outcomes] of the mapping")
    outcome = outcome or ("connected" if seconds > 0 else "no_answer")
    return row.build(
        CallLogged, **ids, direction=direction, outcome=outcome, duration_seconds=seconds
    )


def submissions(stream: IO[bytes], source: str, mapping: CrmMapping) -> Iterator[ImportItem]:
    """Form or campaign submissions as campaign responses."""
    return each_row(stream, source, lambda row: _submission(row, mapping), mapping.times)


def _submission(row: Row, mapping: CrmMapping) -> list[ImportItem]:
    prefix = mapping.id_prefix
    contact = row.required("Contact ID", "Record ID", why=": who submitted?")
    at = row.time("Submitted At", "Conversion Date", "Conversion date", "Timestamp")
    campaign_name = row.text("Campaign")
    form = row.text("Form Name", "Form ID", "Form")
    if not campaign_name and not form:
        raise BadValue("no Campaign nor Form Name: what was submitted?")
    campaign = (
        ident(prefix, "campaign", campaign_name) if campaign_name else ident(prefix, "form", form)
    )
    submission = row.text("Submission ID", "Conversion ID")
    event_id = (
        ident(prefix, "submission", submission)
        if submission
        else hashed_id(prefix, "submission", contact, campaign, at.isoformat())
    )
    kind = mapping.response_kind(row.text("Form Type")) or "form_submission"
    return [
        row.build(
            CampaignResponded, event_id=event_id, occurred_at=at,
            account_id=_company(row, mapping), contact_id=ident(prefix, "contact", contact),
            campaign_id=campaign, kind=kind,
        )
    ]  # fmt: skip
