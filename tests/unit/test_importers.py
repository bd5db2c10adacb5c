"""The importers on small exports written here: the events they make, and what they refuse."""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from textwrap import dedent

import pytest

from events import EventBase
from events.importers import (
    ImportItem,
    ImportRequest,
    MappingInvalid,
    Refused,
    Skipped,
    SourceUnreadable,
    import_file,
)
from events.importers.values import ident, slug
from tests.support.shared_data import maven_crm_pipeline

MAVEN_MAPPING = Path(__file__).parents[2] / "deploy" / "mappings" / "maven_crm.toml"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(dedent(text).lstrip(), encoding="utf-8")
    return path


def run(
    kind: str,
    path: Path,
    mapping: Path | None = None,
    lookups: tuple[Path, ...] = (),
) -> list[ImportItem]:
    return list(import_file(ImportRequest(kind, path, mapping, lookups)))


def events(items: list[ImportItem]) -> list[EventBase]:
    return [item for item in items if isinstance(item, EventBase)]


def refused(items: list[ImportItem]) -> list[Refused]:
    return [item for item in items if isinstance(item, Refused)]


def skipped(items: list[ImportItem]) -> list[Skipped]:
    return [item for item in items if isinstance(item, Skipped)]


def by_id(items: list[ImportItem]) -> dict[str, EventBase]:
    return {event.event_id: event for event in events(items)}


def table(*lines: str) -> str:
    """CSV text from its lines (long lines given as adjacent string pieces)."""
    return "\n".join(lines) + "\n"


# --- Salesforce ------------------------------------------------------------------------------

OPPORTUNITIES = table(
    "Id,AccountId,OwnerId,Name,StageName,Amount,CreatedDate,CloseDate,IsClosed,IsWon,"
    "LastStageChangeDate,Custom__c",
    "006A1,001X,005R,Acme expansion,Proposal,12000,2024-03-04T09:00:00.000Z,2024-06-30,"
    "false,false,2024-03-20T10:00:00.000Z,x",
    "006A2,001X,005R,Acme renewal,Closed Won,5000.50,2024-03-05T09:00:00.000Z,2024-04-02,"
    "true,true,2024-04-02T15:30:00.000Z,",
    "006A3,001Y,005S,Beta pilot,Closed Lost,800,2024-03-06T14:00:00.000Z,2024-03-06,true,false,,",
    "006A4,,005S,No account,Prospecting,100,2024-03-07T09:00:00.000Z,2024-05-01,false,false,,",
)


def test_salesforce_opportunities_open_move_to_their_stage_and_closed_ones_close(
    tmp_path: Path,
) -> None:
    items = run("salesforce-opportunities", write(tmp_path, "Opportunity.csv", OPPORTUNITIES))

    found = by_id(items)
    opened = found["sf:006A1:opened"]
    assert opened.type == "deal_opened"
    assert opened.stage == "Prospecting"
    assert opened.amount == Decimal("12000.00")
    assert (opened.deal_id, opened.account_id, opened.actor_id) == (
        "sf:006A1",
        "sf:001X",
        "sf:005R",
    )
    moved = found["sf:006A1:stage:proposal:20240320T100000+0000"]
    assert moved.to_stage == "Proposal"
    assert moved.occurred_at.isoformat() == "2024-03-20T10:00:00+00:00"
    won = found["sf:006A2:won"]
    assert won.amount == Decimal("5000.50")
    assert won.occurred_at.isoformat() == "2024-04-02T15:30:00+00:00"
    lost = found["sf:006A3:lost"]
    assert lost.reason == "Closed Lost"
    # closed on the day it opened, with a date only: placed at the open, not before it
    assert lost.occurred_at == found["sf:006A3:opened"].occurred_at
    assert [(r.location, r.reason) for r in refused(items)] == [
        ("line 5", "no AccountId: a deal needs its account")
    ]


HISTORY = """
Id,OpportunityId,StageName,Amount,CreatedDate,CreatedById
008H1,006A2,Prospecting,5000,2024-03-05T09:00:00.000Z,005R
008H2,006A2,Prospecting,5500,2024-03-08T09:00:00.000Z,005R
008H3,006A2,Proposal,5500,2024-03-12T09:00:00.000Z,005R
008H4,006A2,Closed Won,5500,2024-04-02T15:30:00.000Z,005R
008H5,006A2,Negotiation,5500,2024-03-01T09:00:00.000Z,005R
008H6,006ZZ,Proposal,1,2024-03-12T09:00:00.000Z,005R
"""


def test_salesforce_history_gives_stage_changes_and_says_why_other_rows_are_not(
    tmp_path: Path,
) -> None:
    lookup = write(tmp_path, "Opportunity.csv", OPPORTUNITIES)
    items = run(
        "salesforce-history", write(tmp_path, "OpportunityHistory.csv", HISTORY), lookups=(lookup,)
    )

    changes = events(items)
    assert [(e.event_id, e.from_stage, e.to_stage) for e in changes] == [
        ("sf:008H1", None, "Prospecting"),
        ("sf:008H3", "Prospecting", "Proposal"),
    ]
    assert changes[1].account_id == "sf:001X"
    assert [s.reason for s in skipped(items)] == [
        "no stage change (an edit of amount or close date)",
        "closing stage: the close comes from the Opportunity export",
    ]
    reasons = [r.reason for r in refused(items)]
    assert reasons[0].startswith("out of time order for opportunity 006A2")
    assert "pass the Opportunity, Contact or Lead export with --lookup" in reasons[1]


def test_salesforce_field_history_reads_old_and_new_stage(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "OpportunityFieldHistory.csv",
        """
        Id,OpportunityId,Field,OldValue,NewValue,CreatedDate
        017F1,006A1,Amount,100,200,2024-03-10T09:00:00.000Z
        017F2,006A1,StageName,Prospecting,Value Proposition,2024-03-11T09:00:00.000Z
        """,
    )
    mapping = write(tmp_path, "sf.toml", '[stages]\n"Value Proposition" = "Proposal"\n')
    lookup = write(tmp_path, "Opportunity.csv", OPPORTUNITIES)

    items = run("salesforce-history", path, mapping, (lookup,))

    [change] = events(items)
    assert (change.from_stage, change.to_stage) == ("Prospecting", "Proposal")
    assert [s.reason for s in skipped(items)] == ["not a stage change (Field Amount)"]


TASKS = table(
    "Id,AccountId,WhatId,WhoId,OwnerId,Subject,TaskSubtype,CallType,CallDurationInSeconds,"
    "CallDisposition,CreatedDate,ActivityDate",
    "00T1,001X,006A1,003C,005R,Call,Call,Outbound,0,Left Voicemail,2024-03-05T10:00:00.000Z,"
    "2024-03-05",
    "00T2,001X,006A1,003C,005R,Call,Call,Inbound,420,,2024-03-06T10:00:00.000Z,",
    "00T3,001X,006A1,003C,005R,Email: pricing,Email,,,,2024-03-07T10:00:00.000Z,",
    "00T4,001X,,,005R,Follow up,Task,,,,2024-03-07T10:00:00.000Z,",
    "00T5,,001Q,,005R,Call,Call,Outbound,60,,2024-03-07T10:00:00.000Z,",
    "00T6,001X,,,005R,Call,Call,Outbound,30,Hung up,2024-03-07T10:00:00.000Z,",
)


def test_salesforce_tasks_become_calls_and_emails(tmp_path: Path) -> None:
    items = run("salesforce-tasks", write(tmp_path, "Task.csv", TASKS))

    found = by_id(items)
    voicemail = found["sf:00T1"]
    assert (voicemail.outcome, voicemail.duration_seconds) == ("voicemail", 0)
    assert (voicemail.deal_id, voicemail.contact_id) == ("sf:006A1", "sf:003C")
    inbound = found["sf:00T2"]
    assert (inbound.direction, inbound.outcome, inbound.duration_seconds) == (
        "inbound",
        "connected",
        420,
    )
    assert found["sf:00T3"].type == "email"
    assert [s.reason for s in skipped(items)] == [
        "a task that is neither a call nor an email (task)"
    ]
    reasons = {r.location: r.reason for r in refused(items)}
    assert "no account known for WhatId 001Q" in reasons["line 6"]
    assert reasons["line 7"] == "CallDisposition 'Hung up' is not in [call_outcomes] of the mapping"


def test_salesforce_events_become_meetings_with_their_slot(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Event.csv",
        """
        Id,AccountId,WhatId,OwnerId,Type,StartDateTime,EndDateTime,DurationInMinutes,IsAllDayEvent
        00U1,001X,006A1,005R,Demo,2024-03-05T10:00:00.000Z,2024-03-05T11:00:00.000Z,60,false
        00U2,001X,006A1,005R,Meeting,2024-03-06T10:00:00.000Z,,30,false
        00U3,001X,006A1,005R,,2024-03-07T00:00:00.000Z,2024-03-08T00:00:00.000Z,1440,true
        """,
    )
    items = run("salesforce-events", path)

    found = by_id(items)
    assert found["sf:00U1"].kind == "demo"
    second = found["sf:00U2"]
    assert second.ended_at - second.started_at == timedelta(minutes=30)
    assert [s.reason for s in skipped(items)] == ["an all-day event: no meeting slot"]


def test_salesforce_campaign_members_take_accounts_and_kinds_from_lookups(tmp_path: Path) -> None:
    contacts = write(tmp_path, "Contact.csv", "Id,AccountId,Email\n003C,001X,a@x.com\n")
    leads = write(tmp_path, "Lead.csv", "Id,ConvertedAccountId\n00QL,001Y\n")
    campaigns = write(tmp_path, "Campaign.csv", "Id,Name,Type\n701W,Spring webinar,Webinar\n")
    members = write(
        tmp_path,
        "CampaignMember.csv",
        """
        Id,CampaignId,ContactId,LeadId,Status,HasResponded,FirstRespondedDate,CreatedDate
        00v1,701W,003C,,Responded,true,2024-02-10,2024-02-01T09:00:00.000Z
        00v2,701W,,00QL,Responded,true,,2024-02-02T09:00:00.000Z
        00v3,701W,003C,,Sent,false,,2024-02-01T09:00:00.000Z
        00v4,701W,,00QX,Responded,true,2024-02-11,2024-02-01T09:00:00.000Z
        """,
    )
    items = run("salesforce-campaign-members", members, lookups=(contacts, leads, campaigns))

    found = by_id(items)
    first = found["sf:00v1"]
    assert (first.account_id, first.campaign_id, first.kind) == ("sf:001X", "sf:701W", "webinar")
    assert first.occurred_at.isoformat() == "2024-02-10T00:00:00+00:00"
    assert found["sf:00v2"].account_id == "sf:001Y"
    assert [s.reason for s in skipped(items)] == ["the member did not respond"]
    [lost] = refused(items)
    assert lost.location == "line 5" and "LeadId 00QX" in lost.reason


# --- HubSpot ---------------------------------------------------------------------------------

HUBSPOT_DEALS = table(
    "Record ID,Deal Name,Deal Stage,Amount,Create Date,Close Date,Deal owner,"
    'Associated Company IDs,"Date entered ""Appointment Scheduled (Sales Pipeline)""",'
    '"Date entered ""Contract Sent (Sales Pipeline)""",'
    '"Date entered ""Closed Won (Sales Pipeline)"""',
    "901,Acme,Closed Won,2400,2024-01-15 09:00,2024-02-20 16:00,Jane Doe,77;78,"
    "2024-01-15 09:00,2024-02-01 11:00,2024-02-20 16:00",
    "902,Beta,Contract Sent,900,2024-07-01 09:00,,Jane Doe,79,,,",
    "903,Gamma,Closed Lost,100,2024-07-01 09:00,2024-07-09 10:00,Jane Doe,,,,",
)


def test_hubspot_deals_open_enter_stages_and_close_in_the_portal_zone(tmp_path: Path) -> None:
    mapping = write(tmp_path, "hs.toml", 'timezone = "Europe/Berlin"\n')
    items = run("hubspot-deals", write(tmp_path, "deals.csv", HUBSPOT_DEALS), mapping)

    found = by_id(items)
    opened = found["hs:deal:901:opened"]
    assert opened.stage == "Appointment Scheduled"
    assert opened.account_id == "hs:company:77"
    assert opened.owner_id == "hs:owner:jane-doe"
    assert opened.occurred_at.isoformat() == "2024-01-15T09:00:00+01:00"
    change = found["hs:deal:901:entered:contract-sent"]
    assert (change.from_stage, change.to_stage) == ("Appointment Scheduled", "Contract Sent")
    won = found["hs:deal:901:won"]
    assert won.amount == Decimal("2400.00")
    assert won.occurred_at.isoformat() == "2024-02-20T16:00:00+01:00"
    summer = found["hs:deal:902:opened"]
    assert summer.stage == "Contract Sent"
    assert summer.occurred_at.utcoffset() == timedelta(hours=2)
    [gamma] = refused(items)
    assert gamma.location == "line 4" and "no Associated Company ID" in gamma.reason


def test_hubspot_engagements_are_touches_and_notes_are_skipped_with_a_reason(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "engagements.csv",
        table(
            "Engagement ID,Engagement Type,Timestamp,Associated Company IDs,Associated Deal IDs,"
            "Owner,Call Direction,Call Outcome,Call Duration (ms),Email Subject,"
            "Meeting Start Time,Meeting End Time,Meeting Outcome",
            "1,CALL,2024-03-01T10:00:00Z,77,901,Jane Doe,OUTBOUND,Connected,754000,,,,",
            "2,EMAIL,2024-03-01T11:00:00Z,77,901,Jane Doe,,,,Proposal,,,",
            "3,INCOMING_EMAIL,2024-03-01T12:00:00Z,77,901,,,,,Re: Proposal,,,",
            "4,MEETING,2024-03-02T09:00:00Z,77,901,Jane Doe,,,,,"
            "2024-03-02T09:00:00Z,2024-03-02T09:45:00Z,NO_SHOW",
            "5,NOTE,2024-03-02T10:00:00Z,77,901,Jane Doe,,,,,,,",
        ),
    )
    items = run("hubspot-engagements", path)

    found = by_id(items)
    call = found["hs:engagement:1"]
    assert (call.outcome, call.duration_seconds, call.deal_id) == ("connected", 754, "hs:deal:901")
    assert found["hs:engagement:2"].direction == "outbound"
    assert found["hs:engagement:3"].direction == "inbound"
    assert found["hs:engagement:4"].outcome == "no_show"
    assert [s.reason for s in skipped(items)] == ["a note is not a customer touch"]
    assert not refused(items)


def test_hubspot_submissions_without_an_id_get_the_same_hash_every_time(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "submissions.csv",
        """
        Submission ID,Contact ID,Associated Company ID,Form Name,Submitted At,Form Type
        s-1,501,77,Pricing request,2024-02-01T10:00:00Z,
        ,502,78,Webinar signup,2024-02-02T10:00:00Z,Webinar
        """,
    )
    first, second = run("hubspot-submissions", path), run("hubspot-submissions", path)

    assert [e.event_id for e in events(first)] == [e.event_id for e in events(second)]
    signup = events(first)[1]
    assert signup.event_id.startswith("hs:submission:")
    assert (signup.campaign_id, signup.kind) == ("hs:form:webinar-signup", "webinar")
    assert events(first)[0].event_id == "hs:submission:s-1"


# --- generic CSV -----------------------------------------------------------------------------


def test_a_csv_of_events_maps_columns_values_and_hashes_ids(tmp_path: Path) -> None:
    mapping = write(
        tmp_path,
        "touches.toml",
        """
        shape = "events"
        id_prefix = "crm"
        timezone = "America/New_York"
        time_formats = ["%m/%d/%Y %H:%M"]
        names = ["account", "actor"]
        [columns]
        type = "Activity"
        occurred_at = "When"
        deal = "Deal"
        account = "Company"
        actor = "Rep"
        outcome = "Result"
        duration_seconds = "Seconds"
        [values.type]
        "Phone call" = "call"
        "E-mail" = "email"
        [values.outcome]
        "Reached" = "connected"
        [defaults]
        direction = "outbound"
        """,
    )
    path = write(
        tmp_path,
        "touches.csv",
        """
        Activity,When,Deal,Company,Rep,Result,Seconds
        Phone call,03/01/2024 10:00,D-1,Acme Corp,Ana Lima,Reached,300
        E-mail,03/01/2024 11:00,D-1,acme corp,Ana Lima,,
        Fax,03/01/2024 12:00,D-1,Acme Corp,Ana Lima,,
        """,
    )
    items = run("csv", path, mapping)

    call, email = events(items)
    assert call.type == "call" and call.outcome == "connected"
    assert call.account_id == email.account_id == "crm:account:acme-corp"
    assert call.actor_id == "crm:rep:ana-lima"
    assert call.occurred_at.isoformat() == "2024-03-01T10:00:00-05:00"
    assert call.event_id.startswith("crm:row:")
    [fax] = refused(items)
    assert fax.location == "line 4" and "type 'Fax' is not an event type" in fax.reason
    assert [e.event_id for e in events(run("csv", path, mapping))] == [
        call.event_id,
        email.event_id,
    ]


def test_a_csv_mapping_that_names_a_missing_column_stops_the_import(tmp_path: Path) -> None:
    mapping = write(
        tmp_path, "m.toml", 'shape = "deals"\n[columns]\ndeal="id"\nopened_at="x"\nstage="s"\n'
    )
    path = write(tmp_path, "deals.csv", "id,s\n1,Won\n")

    with pytest.raises(MappingInvalid, match="has no column x"):
        run("csv", path, mapping)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('shape = "rows"\n', "shape"),
        ("colums = {}\n", "unknown keys: colums"),
        ('[columns]\nsize = "x"\noccurred_at = "t"\n', "fields a events CSV does not have: size"),
        ("not = toml = at all", "not valid TOML"),
        ("columns = " + "[" * 5000 + "]" * 5000, "m.toml is not valid TOML: TOML nested too deep"),
        (
            "[" + ".".join(["columns"] * 5000) + "]",
            "m.toml is not valid TOML: TOML nested too deep",
        ),
    ],
)
def test_a_bad_csv_mapping_is_refused_before_any_row(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, "rows.csv", "a\n1\n")

    with pytest.raises(MappingInvalid, match=message):
        run("csv", path, write(tmp_path, "m.toml", text))


def test_a_csv_import_without_a_mapping_says_to_pass_one(tmp_path: Path) -> None:
    with pytest.raises(MappingInvalid, match="needs --mapping"):
        run("csv", write(tmp_path, "rows.csv", "a\n1\n"))


def test_a_row_with_too_many_fields_is_refused_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "Task.csv", "Id,AccountId,TaskSubtype\n00T1,001X,Task\n00T2,a,b,c\n")

    [bad] = refused(run("salesforce-tasks", path))

    assert (bad.location, bad.reason) == ("line 3", "4 fields where the header has 3")


def test_a_file_that_is_not_utf8_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "Task.csv"
    path.write_bytes("Id,Subject\n1,caf\xe9\n".encode("latin-1"))

    with pytest.raises(SourceUnreadable, match="not UTF-8"):
        run("salesforce-tasks", path)


# --- maven_crm -------------------------------------------------------------------------------


def test_maven_crm_imports_with_every_row_accounted_for_and_outcomes_as_in_the_file() -> None:
    with maven_crm_pipeline().open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    items = run("csv", maven_crm_pipeline(), MAVEN_MAPPING)

    found = events(items)
    deals = {event.deal_id for event in found}
    assert len(deals) + len(refused(items)) == len(rows)
    assert not skipped(items)
    stages = Counter(row["deal_stage"] for row in rows)
    types = Counter(str(event.type) for event in found)
    assert types["deal_won"] == stages["Won"]
    assert types["deal_lost"] == stages["Lost"]
    assert types["deal_opened"] == len(deals)
    reasons = Counter(item.reason for item in refused(items))
    assert reasons["no engage_date: cannot place the deal in time"] == stages["Prospecting"]
    assert len({event.event_id for event in found}) == len(found)
    won = next(e for e in found if e.event_id == "maven:deal:1C1I7A6R:won")
    assert won.amount == Decimal("1054.00")
    assert won.actor_id == "maven:rep:moses-frase"
    assert won.account_id == "maven:account:cancity"


# --- XES -------------------------------------------------------------------------------------

XES_MAPPING = """
id_prefix = "pm"
default_minutes = 30
[case]
account = "customer"
[activities."Call customer"]
type = "call"
direction = "outbound"
outcome = "connected"
[activities."Demo"]
type = "meeting"
kind = "demo"
outcome = "held"
[activities."Create opportunity"]
type = "deal_opened"
stage = "Prospecting"
[activities."Move to proposal"]
type = "stage_changed"
to_stage = "Proposal"
[activities."Won"]
type = "deal_won"
attributes = { amount = "amount" }
"""


def xes_event(activity: str, at: str, transition: str | None = None, **extra: str) -> str:
    """One XES event element."""
    attributes = [f'<string key="concept:name" value="{activity}"/>']
    if transition:
        attributes.append(f'<string key="lifecycle:transition" value="{transition}"/>')
    attributes += [f'<string key="{key}" value="{value}"/>' for key, value in extra.items()]
    attributes.append(f'<date key="time:timestamp" value="{at}"/>')
    return "    <event>" + "".join(attributes) + "</event>"


XES_LOG = "\n".join(
    [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<log xes.version="1.0" xmlns="http://www.xes-standard.org/">',
        "  <trace>",
        '    <string key="concept:name" value="D-7"/>',
        '    <string key="customer" value="Acme"/>',
        xes_event("Create opportunity", "2024-03-30T10:00:00.000+01:00", **{"org:resource": "Ana"}),
        xes_event("Call customer", "2024-03-31T01:50:00.000+01:00", "start"),
        xes_event("Call customer", "2024-03-31T03:05:00.000+02:00", "complete"),
        xes_event("Demo", "2024-04-01T09:00:00.000+02:00", "schedule"),
        xes_event("Demo", "2024-10-27T02:30:00.000+02:00", "start"),
        xes_event("Demo", "2024-10-27T02:15:00.000+01:00", "complete"),
        xes_event("Move to proposal", "2024-10-28T09:00:00.000+01:00"),
        xes_event("Coffee", "2024-10-28T10:00:00.000+01:00"),
        xes_event("Won", "2024-11-02T09:00:00.000+01:00", amount="1500"),
        xes_event("Call customer", "2024-11-03T09:00:00.000+01:00", "start"),
        "  </trace>",
        "</log>",
    ]
)


def test_xes_pairs_start_and_complete_into_touches_across_daylight_saving_changes(
    tmp_path: Path,
) -> None:
    mapping = write(tmp_path, "log.toml", XES_MAPPING)
    items = run("xes", write(tmp_path, "log.xes", XES_LOG), mapping)

    found = by_id(items)
    call = found["pm:D-7:2"]
    assert call.duration_seconds == 15 * 60  # 01:50+01 -> 03:05+02
    assert call.occurred_at.utcoffset() == timedelta(hours=1)
    demo = found["pm:D-7:5"]
    assert demo.started_at.isoformat() == "2024-10-27T02:30:00+02:00"
    assert demo.ended_at - demo.started_at == timedelta(minutes=45)
    opened = found["pm:D-7:0"]
    assert (opened.deal_id, opened.account_id, opened.owner_id) == (
        "pm:D-7",
        "pm:account:Acme",
        "pm:rep:Ana",
    )
    assert found["pm:D-7:8"].amount == Decimal("1500.00")
    assert [s.reason for s in skipped(items)] == ["lifecycle schedule is not a touch"]
    assert [(r.location, r.reason) for r in refused(items)] == [
        ("trace D-7, event 7", "activity 'Coffee' is not in the mapping's [activities]"),
        ("trace D-7, event 9", "START of 'Call customer' without a COMPLETE"),
    ]


def test_xes_gzip_gives_the_same_events_as_plain(tmp_path: Path) -> None:
    mapping = write(tmp_path, "log.toml", XES_MAPPING)
    plain = write(tmp_path, "log.xes", XES_LOG)
    zipped = tmp_path / "log.xes.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))

    assert events(run("xes", zipped, mapping)) == events(run("xes", plain, mapping))


def test_xes_event_ids_come_from_identity_id_and_stray_events_are_refused(
    tmp_path: Path,
) -> None:
    log = "\n".join(
        [
            "<log>",
            xes_event("Won", "2024-11-02T09:00:00+01:00"),
            '  <trace><string key="concept:name" value="D-8"/>',
            '  <string key="identity:id" value="trace-level"/>',
            xes_event("Call customer", "2024-11-03T09:00:00+01:00", **{"identity:id": "ev-1"}),
            xes_event("Call customer", "2024-11-03T10:00:00+01:00"),
            "  </trace>",
            "</log>",
        ]
    )
    mapping = write(tmp_path, "log.toml", XES_MAPPING)

    items = run("xes", write(tmp_path, "log.xes", log), mapping)

    assert [e.event_id for e in events(items)] == ["pm:ev-1", "pm:D-8:1"]
    [stray] = refused(items)
    assert stray.location == "outside any trace"


def test_xes_that_is_not_xml_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(SourceUnreadable, match="not XES"):
        run("xes", write(tmp_path, "log.xes", "<log><trace></log>"))


# --- ids -------------------------------------------------------------------------------------


def test_importing_the_same_files_twice_gives_the_same_events(tmp_path: Path) -> None:
    opportunities = write(tmp_path, "Opportunity.csv", OPPORTUNITIES)
    tasks = write(tmp_path, "Task.csv", TASKS)
    log = write(tmp_path, "log.xes", XES_LOG)
    mapping = write(tmp_path, "log.toml", XES_MAPPING)

    for kind, path, given in (
        ("salesforce-opportunities", opportunities, None),
        ("salesforce-tasks", tasks, None),
        ("xes", log, mapping),
    ):
        assert events(run(kind, path, given)) == events(run(kind, path, given))


def test_names_become_valid_ids_deterministically() -> None:
    assert slug("Genco Pura Olive Oil Company") == "genco-pura-olive-oil-company"
    assert slug("Zoë  Müller") == "zoe-muller"
    assert ident("maven", "account", "Acme, Inc.") == "maven:account:acme-inc"
    long = ident("x", "a" * 300)
    assert len(long) == 128 and long == ident("x", "a" * 300)


def test_an_amount_past_the_cent_is_refused_with_its_line_never_rounded(tmp_path: Path) -> None:
    header = "Id,AccountId,OwnerId,Name,StageName,Amount,CreatedDate,CloseDate,IsClosed,IsWon"
    opened = "Prospecting,{},2024-03-04T09:00:00.000Z,2024-06-30,false,false"
    path = write(
        tmp_path,
        "Opportunity.csv",
        table(
            header,
            "006B1,001X,005R,Exact," + opened.format("5000.500"),
            "006B2,001X,005R,Sub-cent," + opened.format("5000.505"),
            "006B3,001X,005R,Huge," + opened.format("1e30"),
        ),
    )

    items = run("salesforce-opportunities", path)

    assert by_id(items)["sf:006B1:opened"].amount == Decimal("5000.50")
    reasons = {r.location: r.reason for r in refused(items)}
    assert set(reasons) == {"line 3", "line 4"}
    assert reasons["line 3"].startswith("Amount: 5000.505 has more than two decimal places")
    assert reasons["line 4"] == "Amount: '1e30' is too large an amount"
