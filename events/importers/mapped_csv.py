"""Any CSV, with a TOML mapping that says which column is what and what its values mean.

Two shapes. `shape = "deals"`: one row per deal, becoming `deal_opened` at `opened_at`
(in the row's stage while open, else in `[defaults] opening_stage`), then `deal_won` or
`deal_lost` at `closed_at` when the stage maps to deal_won / deal_lost. `shape =
"events"`: one row per event, its `type` column (through `[values.type]`) naming the
event type, every other field taken from its column or its default.

    shape = "deals"
    id_prefix = "maven"           # ids: maven:deal:<id>, maven:account:<slug>, maven:rep:<slug>
    timezone = "UTC"              # zone of times without an offset, and of dates
    date_time = "00:00"           # where a date without a time of day lands
    time_formats = ["%d.%m.%Y"]   # tried after ISO 8601
    [columns]                     # Gemba field = CSV column
    deal = "opportunity_id"
    [values.stage]                # per field: CSV value = Gemba value
    Won = "deal_won"
    [defaults]                    # Gemba field = value, when the column is absent or empty
    lost_reason = "Lost"

Fields: deal, account, contact, owner (actor for events), campaign, stage, opened_at,
closed_at, amount (of the win), expected_amount (of the opening), currency, name,
product, segment, industry, lost_reason, competitor; for events also type, event_id,
occurred_at, and every field of the event models (direction, outcome,
duration_seconds, kind, started_at, ended_at, subject, from_stage, to_stage, reason,
quote_id, version, status, ...). Id fields keep id-safe values as they are and slug
the rest; fields listed in `names = ["account", "owner"]` hold names, always slugged
(`Acme Corp` and `acme corp` are one account). An events row
without an event_id column gets a hash of its values as id, so the same file
always gives the same ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from events.importers.crm import CLOSED, WON, read_toml, time_rules
from events.importers.errors import MappingInvalid
from events.importers.outcome import ImportItem
from events.importers.rows import Row, TimeRules, each_row
from events.importers.values import (
    BadValue,
    hashed_id,
    ident,
    parse_bool,
    parse_money,
    slug,
)
from events.models import EVENT_TYPES, DealLost, DealOpened, DealWon

__all__ = ["CsvMapping", "load_csv_mapping", "mapped_rows"]

ID_FIELDS = {
    "deal": ("deal_id", "deal"), "account": ("account_id", "account"),
    "contact": ("contact_id", "contact"), "owner": ("owner_id", "rep"),
    "actor": ("actor_id", "rep"), "campaign": ("campaign_id", "campaign"),
    "quote_id": ("quote_id", "quote"),
}  # fmt: skip
TIME_FIELDS = {"opened_at", "closed_at", "occurred_at", "started_at", "ended_at"}
MONEY_FIELDS = {"amount", "expected_amount"}
INT_FIELDS = {"duration_seconds", "version"}
BOOL_FIELDS = {"replies_to_customer", "requested_by_customer"}
DEAL_FIELDS = {
    "deal", "account", "owner", "contact", "campaign", "stage", "opened_at", "closed_at",
    "amount", "expected_amount", "currency", "name", "product", "segment", "industry",
    "lost_reason", "competitor", "opening_stage",
}  # fmt: skip
EVENT_FIELDS = {
    name
    for model in EVENT_TYPES.values()
    for name in model.model_fields
    if name != "schema_version" and (not name.endswith("_id") or name == "quote_id")
} | {"type", "event_id", "deal", "account", "contact", "actor", "owner", "campaign"}
_TOP = {"shape", "id_prefix", "timezone", "date_time", "time_formats", "columns", "values"}
_TOP |= {"defaults", "names"}


def _key(value: str) -> str:
    return " ".join(value.split()).lower()


@dataclass(frozen=True)
class CsvMapping:
    """A CSV's columns, value maps and defaults, per Gemba field."""

    shape: str
    id_prefix: str
    times: TimeRules
    columns: Mapping[str, str]
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    defaults: Mapping[str, str] = field(default_factory=dict)
    names: frozenset[str] = frozenset()

    def raw(self, row: Row, name: str) -> str:
        """The field's cell (value-mapped), else its default, else empty."""
        column = self.columns.get(name)
        cell = row.text(column) if column else ""
        if cell:
            table = self.values.get(name, {})
            return table.get(cell, table.get(_key(cell), cell))
        return self.defaults.get(name, "")

    def value(self, row: Row, name: str) -> Any:
        """The field's value converted to what the event model takes, or None when empty."""
        text = self.raw(row, name)
        if not text:
            return None
        column = self.columns.get(name, name)
        try:
            if name in ID_FIELDS:
                key = slug(text) if name in self.names else text
                return ident(self.id_prefix, ID_FIELDS[name][1], key)
            if name in TIME_FIELDS:
                return self.times.parse(text)
            if name in MONEY_FIELDS:
                return parse_money(text)
            if name in INT_FIELDS:
                return int(float(text))
            if name in BOOL_FIELDS:
                return parse_bool(text)
        except (BadValue, ValueError) as exc:
            raise BadValue(f"{column}: {exc}") from None
        return text


def _strings(document: Any, name: str) -> dict[str, str]:
    if document is None:
        return {}
    if not isinstance(document, dict) or not all(
        isinstance(value, str | int | float) for value in document.values()
    ):
        raise MappingInvalid(f"[{name}] must be a table of names to strings")
    return {str(key): str(value) for key, value in document.items()}


def load_csv_mapping(path: Path) -> CsvMapping:
    """Read and check a CSV mapping; MappingInvalid names what is wrong."""
    document = read_toml(path)
    unknown = sorted(set(document) - _TOP)
    if unknown:
        raise MappingInvalid(f"the mapping {path} has unknown keys: {', '.join(unknown)}")
    shape = document.get("shape", "events")
    if shape not in {"deals", "events"}:
        raise MappingInvalid(f'shape = {shape!r}: use "deals" or "events"')
    known = DEAL_FIELDS if shape == "deals" else EVENT_FIELDS
    columns = _strings(document.get("columns"), "columns")
    defaults = _strings(document.get("defaults"), "defaults")
    raw_values = document.get("values", {})
    if not isinstance(raw_values, dict):
        raise MappingInvalid("[values] must hold one table per field")
    values = {
        name: {_key(k): v for k, v in _strings(table, f"values.{name}").items()}
        for name, table in raw_values.items()
    }
    for table_name, names in (("columns", columns), ("defaults", defaults), ("values", values)):
        strange = sorted(set(names) - known)
        if strange:
            raise MappingInvalid(
                f"[{table_name}] names fields a {shape} CSV does not have: {', '.join(strange)}"
            )
    names = document.get("names", [])
    if not isinstance(names, list) or not set(names) <= set(ID_FIELDS):
        raise MappingInvalid(f"names must list id fields among {', '.join(sorted(ID_FIELDS))}")
    needed = {"deal", "opened_at", "stage"} if shape == "deals" else {"occurred_at"}
    missing = sorted(needed - set(columns))
    if missing:
        raise MappingInvalid(f"[columns] must say which column holds {', '.join(missing)}")
    return CsvMapping(
        shape=shape,
        id_prefix=str(document.get("id_prefix", "csv")),
        times=time_rules(document),
        columns=columns,
        values=values,
        defaults=defaults,
        names=frozenset(names),
    )


def mapped_rows(stream: IO[bytes], source: str, mapping: CsvMapping) -> Iterator[ImportItem]:
    """Each row as the events its mapping makes of it, or refused with the reason."""
    checked: list[bool] = []

    def convert(row: Row) -> list[ImportItem]:
        if not checked:
            _check_columns(row, mapping)
            checked.append(True)
        return _deal_row(row, mapping) if mapping.shape == "deals" else _event_row(row, mapping)

    return each_row(stream, source, convert, mapping.times)


def _check_columns(row: Row, mapping: CsvMapping) -> None:
    absent = sorted(column for column in mapping.columns.values() if column not in row.values)
    if absent:
        raise MappingInvalid(
            f"{row.source} has no column {', '.join(absent)}; its columns are: "
            f"{', '.join(row.values)}"
        )


def _required(row: Row, mapping: CsvMapping, name: str, why: str) -> Any:
    value = mapping.value(row, name)
    if value is None:
        raise BadValue(f"no {mapping.columns.get(name, name)}: {why}")
    return value


def _deal_row(row: Row, mapping: CsvMapping) -> list[ImportItem]:
    deal = _required(row, mapping, "deal", "which deal is this?")
    opened_at = _required(row, mapping, "opened_at", "cannot place the deal in time")
    account = _required(row, mapping, "account", "every event needs the customer account")
    owner = _required(row, mapping, "owner", "a deal needs the rep who owns it")
    stage = mapping.raw(row, "stage")
    common = {
        "deal_id": deal, "account_id": account, "actor_id": owner,
        "contact_id": mapping.value(row, "contact"), "campaign_id": mapping.value(row, "campaign"),
    }  # fmt: skip
    currency = mapping.value(row, "currency")
    opening = mapping.raw(row, "opening_stage") or "Prospecting"
    opened = row.build(
        DealOpened, event_id=f"{deal}:opened", occurred_at=opened_at, **common, owner_id=owner,
        stage=opening if stage in CLOSED or not stage else stage, currency=currency,
        amount=mapping.value(row, "expected_amount"), name=mapping.value(row, "name"),
        product=mapping.value(row, "product"), segment=mapping.value(row, "segment"),
        industry=mapping.value(row, "industry"),
    )  # fmt: skip
    if stage not in CLOSED:
        return [opened]
    closed_at = _required(row, mapping, "closed_at", f"a deal {stage} needs its close time")
    if closed_at < opened_at:
        raise BadValue(
            f"{mapping.columns['closed_at']} is before {mapping.columns['opened_at']}: "
            "the deal would close before it opened"
        )
    if stage == WON:
        close = row.build(
            DealWon, event_id=f"{deal}:won", occurred_at=closed_at, **common,
            amount=mapping.value(row, "amount"), currency=currency,
        )  # fmt: skip
    else:
        close = row.build(
            DealLost, event_id=f"{deal}:lost", occurred_at=closed_at, **common,
            reason=mapping.raw(row, "lost_reason") or "Lost",
            competitor=mapping.value(row, "competitor"),
        )  # fmt: skip
    return [opened, close]


def _event_row(row: Row, mapping: CsvMapping) -> list[ImportItem]:
    kind = mapping.raw(row, "type")
    model = EVENT_TYPES.get(kind)
    if model is None:
        raise BadValue(
            f"type {kind!r} is not an event type: map it in [values.type] to one of "
            f"{', '.join(sorted(EVENT_TYPES))}"
        )
    fields: dict[str, Any] = {}
    for name in sorted(EVENT_FIELDS - {"type", "event_id"}):
        value = mapping.value(row, name)
        target = ID_FIELDS[name][0] if name in ID_FIELDS else name
        if value is not None and target in model.model_fields:
            fields[target] = value
    owner = mapping.value(row, "owner")
    if kind == "deal_opened":
        fields.setdefault("owner_id", fields.get("actor_id"))
    elif owner is not None:
        fields.setdefault("actor_id", owner)
    event_id = mapping.raw(row, "event_id")
    fields["event_id"] = (
        ident(mapping.id_prefix, event_id)
        if event_id
        else hashed_id(mapping.id_prefix, "row", *row.values.values())
    )
    return [row.build(model, **fields)]
