"""Salesforce exports (Data Loader / Data Export CSV) as events.

Columns are Salesforce API field names; any other column is ignored. Times are
ISO 8601 as Data Loader writes them (`2024-03-05T14:22:10.000Z`); dates (`CloseDate`,
`ActivityDate`, `FirstRespondedDate`) land at the mapping's `date_time` in its zone.
Every id is `<prefix>:<Salesforce id>` (prefix `sf` unless the mapping says otherwise):
Salesforce ids are unique across objects, so deals, accounts and reps keep theirs.

- **Opportunity**: Id, AccountId, OwnerId, CreatedDate, StageName; optional Name,
  Amount, CurrencyIsoCode, CloseDate, IsClosed, IsWon, LastStageChangeDate.
  `deal_opened` (`<id>:opened`) at CreatedDate in the mapping's opening stage; an open
  opportunity in another stage also gets a `stage_changed` (`<id>:stage:<stage>:<time>`)
  at LastStageChangeDate when the export has it; a closed one gets `deal_won` /
  `deal_lost` (`<id>:won` / `<id>:lost`) at LastStageChangeDate, else CloseDate (a
  CloseDate on the day the deal opened is placed at the open). Closed and won come
  from IsClosed / IsWon, or else from the stage mapping (`Closed Won` -> deal_won).
- **OpportunityHistory**: Id, OpportunityId, StageName, CreatedDate. A row whose stage
  differs from the previous row of its opportunity is a `stage_changed`; rows must be
  in time order per opportunity (sort the export by OpportunityId, CreatedDate).
  **OpportunityFieldHistory** (Id, OpportunityId, Field, OldValue, NewValue,
  CreatedDate): rows with Field = StageName. Rows that close the deal are skipped: the
  close comes from the Opportunity export. The account comes from a lookup file.
- **Task**: Id, AccountId or WhatId, OwnerId, TaskSubtype or Type (Call, Email),
  CompletedDateTime / CreatedDate / ActivityDate; calls: CallType (Inbound, Outbound),
  CallDurationInSeconds, CallDisposition; emails: Subject. WhatId starting `006` is the
  deal; WhoId starting `003` the contact. Other tasks are skipped.
- **Event** (meetings): Id, AccountId or WhatId, OwnerId, StartDateTime (or
  ActivityDateTime), EndDateTime (or DurationInMinutes), Type, IsAllDayEvent. All-day
  events are skipped; Type goes through [meeting_kinds]; a meeting is held.
- **CampaignMember**: Id, CampaignId, ContactId or LeadId, HasResponded,
  FirstRespondedDate (else CreatedDate), Status. Members who did not respond are
  skipped. The account comes from a lookup file (Contact: Id, AccountId; Lead: Id,
  ConvertedAccountId); the response kind from the Campaign's Type (a Campaign export
  as lookup file), else Status, through [response_kinds], else form_submission.

Events are immutable: a later export of an opportunity already imported adds only what
is new (a stage reached since, the close); edits to its opening are not re-imported.

Lookup files (`lookups`) are Salesforce exports read once, before the import: any row
with Id and AccountId (Opportunity, Contact, Task...) or ConvertedAccountId (Lead) maps
that id to its account; a row with Id and Type but no AccountId column (Campaign) maps
the campaign to its type. Only ids are kept in memory, never the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from events.importers.crm import CLOSED, WON, CrmMapping
from events.importers.outcome import ImportItem, Refused
from events.importers.rows import Row, each_row
from events.importers.source import csv_rows, open_source
from events.importers.values import BadValue, ident, slug
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

__all__ = [
    "SalesforceLookups",
    "campaign_members",
    "meetings",
    "opportunities",
    "opportunity_history",
    "read_lookups",
    "tasks",
]

OPPORTUNITY, CONTACT = "006", "003"


@dataclass
class SalesforceLookups:
    """Ids to accounts, and campaigns to their type, from lookup exports."""

    accounts: dict[str, str] = field(default_factory=dict)
    campaign_types: dict[str, str] = field(default_factory=dict)


def read_lookups(paths: Iterable[Path]) -> SalesforceLookups:
    """Read each lookup export once; only ids and account ids (or campaign types) are kept."""
    lookups = SalesforceLookups()
    for path in paths:
        with open_source(path) as stream:
            for item in csv_rows(stream, path.name):
                if isinstance(item, Refused):
                    continue
                _, row = item
                record = row.get("Id", "").strip()
                account = (row.get("AccountId") or row.get("ConvertedAccountId") or "").strip()
                if record and account:
                    lookups.accounts[record] = account
                elif record and "AccountId" not in row and row.get("Type", "").strip():
                    lookups.campaign_types[record] = row["Type"].strip()
    return lookups


def _account(row: Row, mapping: CrmMapping, lookups: SalesforceLookups, *keys: str) -> str:
    """The row's AccountId, or the account of the first of `keys` columns found in a lookup."""
    direct = row.text("AccountId")
    if direct:
        return ident(mapping.id_prefix, direct)
    for key in keys:
        record = row.text(key)
        if record in lookups.accounts:
            return ident(mapping.id_prefix, lookups.accounts[record])
    named = " or ".join(f"{key} {row.text(key)}" for key in keys if row.text(key)) or "it"
    raise BadValue(
        f"no AccountId, and no account known for {named}: pass the Opportunity, Contact "
        "or Lead export with --lookup"
    )


def opportunities(stream: IO[bytes], source: str, mapping: CrmMapping) -> Iterator[ImportItem]:
    """Opportunity rows as deal_opened, a stage change for open ones, and the close."""
    return each_row(stream, source, lambda row: _opportunity(row, mapping), mapping.times)


def _opportunity(row: Row, mapping: CrmMapping) -> list[ImportItem]:
    prefix = mapping.id_prefix
    opportunity = row.required("Id")
    deal = ident(prefix, opportunity)
    opened_at = row.time("CreatedDate")
    common = {
        "deal_id": deal,
        "account_id": ident(prefix, row.required("AccountId", why=": a deal needs its account")),
        "actor_id": ident(prefix, row.required("OwnerId")),
    }
    currency = row.text("CurrencyIsoCode") or mapping.currency
    items: list[ImportItem] = [
        row.build(
            DealOpened, event_id=f"{deal}:opened", occurred_at=opened_at, **common,
            stage=mapping.opening_stage, owner_id=common["actor_id"],
            name=row.text("Name") or None, amount=row.money("Amount"), currency=currency,
        )
    ]  # fmt: skip
    stage = mapping.stage(row.text("StageName"))
    closed = row.flag("IsClosed") if row.text("IsClosed") else stage in CLOSED
    if not closed:
        changed_at = row.optional_time("LastStageChangeDate")
        if stage and stage != mapping.opening_stage and changed_at is not None:
            items.append(
                row.build(
                    StageChanged, occurred_at=changed_at, **common, from_stage=None,
                    to_stage=stage,
                    event_id=ident(prefix, opportunity, "stage", slug(stage),
                                   changed_at.strftime("%Y%m%dT%H%M%S%z")),
                )
            )  # fmt: skip
        return items
    won = row.flag("IsWon") if row.text("IsWon") else stage == WON
    closed_at = _close_time(row, opened_at)
    if won:
        items.append(
            row.build(
                DealWon, event_id=f"{deal}:won", occurred_at=closed_at, **common,
                amount=row.money("Amount"), currency=currency,
            )
        )  # fmt: skip
    else:
        items.append(
            row.build(
                DealLost, event_id=f"{deal}:lost", occurred_at=closed_at, **common,
                reason=row.text("StageName") or "Closed Lost",
            )
        )  # fmt: skip
    return items


def _close_time(row: Row, opened_at: datetime) -> datetime:
    """When a closed opportunity closed: LastStageChangeDate, else CloseDate."""
    exact = row.optional_time("LastStageChangeDate")
    if exact is not None:
        return exact
    closed_at = row.time("CloseDate", why=": a closed opportunity needs its close date")
    if closed_at < opened_at and closed_at.date() == opened_at.astimezone(closed_at.tzinfo).date():
        return opened_at
    return closed_at


def opportunity_history(
    stream: IO[bytes], source: str, mapping: CrmMapping, lookups: SalesforceLookups
) -> Iterator[ImportItem]:
    """OpportunityHistory or OpportunityFieldHistory rows as stage changes."""
    last: dict[str, tuple[str, datetime]] = {}
    return each_row(
        stream, source, lambda row: _history(row, mapping, lookups, last), mapping.times
    )


def _history(
    row: Row,
    mapping: CrmMapping,
    lookups: SalesforceLookups,
    last: dict[str, tuple[str, datetime]],
) -> list[ImportItem]:
    opportunity = row.required("OpportunityId")
    at = row.time("CreatedDate")
    if row.has("Field"):
        if row.text("Field") != "StageName":
            return [row.skipped(f"not a stage change (Field {row.text('Field') or '-'})")]
        before: str | None = mapping.stage(row.text("OldValue")) or None
        after = mapping.stage(row.required("NewValue"))
    else:
        after = mapping.stage(row.required("StageName"))
        previous = last.get(opportunity)
        if previous is not None and at < previous[1]:
            raise BadValue(
                f"out of time order for opportunity {opportunity}: sort the export by "
                "OpportunityId, CreatedDate"
            )
        last[opportunity] = (after, at)
        if previous is not None and previous[0] == after:
            return [row.skipped("no stage change (an edit of amount or close date)")]
        before = previous[0] if previous is not None else None
    if after in CLOSED:
        return [row.skipped("closing stage: the close comes from the Opportunity export")]
    if before in CLOSED:
        before = None
    deal = ident(mapping.id_prefix, opportunity)
    return [
        row.build(
            StageChanged, event_id=ident(mapping.id_prefix, row.required("Id")), occurred_at=at,
            deal_id=deal, account_id=_account(row, mapping, lookups, "OpportunityId"),
            actor_id=_optional_id(mapping, row.text("CreatedById")), from_stage=before,
            to_stage=after,
        )
    ]  # fmt: skip


def _optional_id(mapping: CrmMapping, value: str) -> str | None:
    return ident(mapping.id_prefix, value) if value else None


def _touch_ids(row: Row, mapping: CrmMapping, lookups: SalesforceLookups) -> dict[str, str | None]:
    """event, deal, account, contact and rep ids of a Task or Event row."""
    what, who = row.text("WhatId"), row.text("WhoId")
    return {
        "event_id": ident(mapping.id_prefix, row.required("Id")),
        "deal_id": _optional_id(mapping, what) if what.startswith(OPPORTUNITY) else None,
        "account_id": _account(row, mapping, lookups, "WhatId", "WhoId"),
        "contact_id": _optional_id(mapping, who) if who.startswith(CONTACT) else None,
        "actor_id": _optional_id(mapping, row.text("OwnerId")),
    }


def tasks(
    stream: IO[bytes], source: str, mapping: CrmMapping, lookups: SalesforceLookups
) -> Iterator[ImportItem]:
    """Task rows that are calls or emails as call and email events; other tasks skipped."""
    return each_row(stream, source, lambda row: _task(row, mapping, lookups), mapping.times)


def _task(row: Row, mapping: CrmMapping, lookups: SalesforceLookups) -> list[ImportItem]:
    kind = (row.text("TaskSubtype") or row.text("Type")).lower()
    if kind not in {"call", "email", "listemail"}:
        return [row.skipped(f"a task that is neither a call nor an email ({kind or 'no type'})")]
    at = row.time("CompletedDateTime", "CreatedDate", "ActivityDate")
    ids = _touch_ids(row, mapping, lookups)
    if kind != "call":
        return [
            row.build(
                EmailLogged, occurred_at=at, **ids, direction="outbound",
                subject=row.text("Subject")[:500] or None,
            )
        ]  # fmt: skip
    direction = row.text("CallType").lower() or "outbound"
    if direction == "internal":
        return [row.skipped("an internal call: no customer on the line")]
    seconds = row.whole_number("CallDurationInSeconds")
    disposition = row.text("CallDisposition")
    outcome = mapping.call_outcome(disposition) if disposition else None
    if disposition and outcome is None:
        raise BadValue(f"CallDisposition {disposition!r} is not in [call_outcomes] of the mapping")
    outcome = outcome or ("connected" if seconds > 0 or direction == "inbound" else "no_answer")
    return [
        row.build(
            CallLogged, occurred_at=at, **ids, direction=direction, outcome=outcome,
            duration_seconds=seconds,
        )
    ]  # fmt: skip


def meetings(
    stream: IO[bytes], source: str, mapping: CrmMapping, lookups: SalesforceLookups
) -> Iterator[ImportItem]:
    """Event rows (calendar entries) as meetings; all-day events skipped."""
    return each_row(stream, source, lambda row: _meeting(row, mapping, lookups), mapping.times)


def _meeting(row: Row, mapping: CrmMapping, lookups: SalesforceLookups) -> list[ImportItem]:
    if row.text("IsAllDayEvent") and row.flag("IsAllDayEvent"):
        return [row.skipped("an all-day event: no meeting slot")]
    start = row.time("StartDateTime", "ActivityDateTime")
    end = row.optional_time("EndDateTime")
    if end is None:
        minutes = row.whole_number("DurationInMinutes", default=-1)
        if minutes < 0:
            raise BadValue("no EndDateTime nor DurationInMinutes: the meeting has no end")
        end = start + timedelta(minutes=minutes)
    outcome = mapping.meeting_outcome(row.text("Status")) if row.text("Status") else None
    return [
        row.build(
            MeetingLogged, occurred_at=start, **_touch_ids(row, mapping, lookups),
            kind=mapping.meeting_kind(row.text("Type")), outcome=outcome or "held",
            started_at=start, ended_at=end,
        )
    ]  # fmt: skip


def campaign_members(
    stream: IO[bytes], source: str, mapping: CrmMapping, lookups: SalesforceLookups
) -> Iterator[ImportItem]:
    """CampaignMember rows that responded as campaign responses; the rest skipped."""
    return each_row(stream, source, lambda row: _member(row, mapping, lookups), mapping.times)


def _member(row: Row, mapping: CrmMapping, lookups: SalesforceLookups) -> list[ImportItem]:
    if not row.flag("HasResponded"):
        return [row.skipped("the member did not respond")]
    campaign = row.required("CampaignId")
    person = row.required("ContactId", "LeadId", why=" nor LeadId: who responded?")
    kind = mapping.response_kind(lookups.campaign_types.get(campaign, ""))
    kind = kind or mapping.response_kind(row.text("Status")) or "form_submission"
    return [
        row.build(
            CampaignResponded, event_id=ident(mapping.id_prefix, row.required("Id")),
            occurred_at=row.time("FirstRespondedDate", "CreatedDate"),
            account_id=_account(row, mapping, lookups, "ContactId", "LeadId"),
            contact_id=ident(mapping.id_prefix, person),
            campaign_id=ident(mapping.id_prefix, campaign), kind=kind,
        )
    ]  # fmt: skip
