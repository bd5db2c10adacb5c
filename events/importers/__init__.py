"""Existing data as events: CRM exports, any CSV with a mapping, and XES event logs.

Every importer is a generator over one file, streamed: it yields, in file order, an
event for each fact it could map, a `Refused` (where, why) for each row or element it
could not, and a `Skipped` for each it deliberately leaves out (a note, an edit that
moved no stage). Event ids come from the source (record ids, or a hash of the row),
so importing the same file twice yields the same ids, and the log dedupes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from events.importers.crm import CrmMapping, load_crm_mapping
from events.importers.errors import ImporterError, MappingInvalid, SourceUnreadable
from events.importers.mapped_csv import load_csv_mapping, mapped_rows
from events.importers.outcome import ImportItem, ImportTally, Refused, Skipped
from events.importers.source import open_source
from events.importers.xes import load_xes_mapping, xes_events

__all__ = [
    "KINDS",
    "ImportItem",
    "ImportRequest",
    "ImportTally",
    "ImporterError",
    "MappingInvalid",
    "Refused",
    "Skipped",
    "SourceUnreadable",
    "import_file",
]

KINDS: dict[str, str] = {
    "salesforce-opportunities": "Salesforce Opportunity export: deals opened and closed",
    "salesforce-history": "Salesforce OpportunityHistory or OpportunityFieldHistory: stages",
    "salesforce-tasks": "Salesforce Task export: calls and emails",
    "salesforce-events": "Salesforce Event export: meetings",
    "salesforce-campaign-members": "Salesforce CampaignMember export: campaign responses",
    "hubspot-deals": "HubSpot deals export: deals, stages entered, closes",
    "hubspot-engagements": "HubSpot engagements or activities export: calls, emails, meetings",
    "hubspot-submissions": "HubSpot form or campaign submissions: campaign responses",
    "csv": "any CSV, with a TOML mapping (--mapping)",
    "xes": "an XES event log, plain or .gz, with a TOML mapping of activities",
}
"""What `gemba import` reads, by kind."""


@dataclass(frozen=True)
class ImportRequest:
    """One file to import: its kind, where it is, its mapping and lookup files."""

    kind: str
    path: Path
    mapping: Path | None = None
    lookups: Sequence[Path] = ()


Reader = Callable[..., Iterator[ImportItem]]
"""An importer bound to its mapping: (binary stream, source name) -> items."""


def _crm_reader(request: ImportRequest) -> Reader:
    from events.importers import hubspot, salesforce

    prefix = "hs" if request.kind.startswith("hubspot") else "sf"
    mapping: CrmMapping = load_crm_mapping(request.mapping, prefix)
    if request.kind.startswith("hubspot"):
        readers = {
            "hubspot-deals": hubspot.deals,
            "hubspot-engagements": hubspot.engagements,
            "hubspot-submissions": hubspot.submissions,
        }
        chosen = readers[request.kind]
        return lambda stream, source: chosen(stream, source, mapping)
    if request.kind == "salesforce-opportunities":
        return lambda stream, source: salesforce.opportunities(stream, source, mapping)
    lookups = salesforce.read_lookups(request.lookups)
    with_lookups = {
        "salesforce-history": salesforce.opportunity_history,
        "salesforce-tasks": salesforce.tasks,
        "salesforce-events": salesforce.meetings,
        "salesforce-campaign-members": salesforce.campaign_members,
    }[request.kind]
    return lambda stream, source: with_lookups(stream, source, mapping, lookups)


def _reader(request: ImportRequest) -> Reader:
    """The kind's importer with its mapping and lookups read (errors raised before any row)."""
    if request.kind not in KINDS:
        raise MappingInvalid(f"unknown kind {request.kind!r}: use one of {', '.join(KINDS)}")
    if request.kind == "csv":
        if request.mapping is None:
            raise MappingInvalid(
                "a CSV import needs --mapping FILE saying which column is what "
                "(see deploy/mappings/maven_crm.toml)"
            )
        csv_mapping = load_csv_mapping(request.mapping)
        return lambda stream, source: mapped_rows(stream, source, csv_mapping)
    if request.kind == "xes":
        xes_mapping = load_xes_mapping(request.mapping)
        return lambda stream, source: xes_events(stream, source, xes_mapping)
    return _crm_reader(request)


def import_file(
    request: ImportRequest, on_bytes: Callable[[int], None] | None = None
) -> Iterator[ImportItem]:
    """Stream the file's events, refusals and skips; `on_bytes` sees bytes read on disk.

    The mapping and lookup files are read first, so their errors come before any row.
    """
    return _stream(_reader(request), request.path, on_bytes)


def _stream(
    read: Reader, path: Path, on_bytes: Callable[[int], None] | None
) -> Iterator[ImportItem]:
    with open_source(path, on_bytes) as stream:
        yield from read(stream, path.name)
