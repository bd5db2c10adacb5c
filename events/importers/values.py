"""Turning exported text into event fields: times, money, flags, ids; and building events."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import datetime, time, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from events.codec import problems_from
from events.importers.errors import MappingInvalid
from events.importers.outcome import Refused
from events.models import CENT, EventBase, exact_to_the_cent

__all__ = [
    "BadValue",
    "build",
    "first_of",
    "hashed_id",
    "ident",
    "parse_bool",
    "parse_money",
    "parse_time",
    "slug",
    "zone",
]

_ID_PART = re.compile(r"^[A-Za-z0-9._@+=-]+$")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
MAX_ID = 128


class BadValue(ValueError):
    """A cell that cannot be read as what its column should hold; the message says why."""


def zone(name: str) -> tzinfo:
    """The IANA time zone `name` (e.g. Europe/Berlin), or MappingInvalid naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingInvalid(f"unknown time zone {name!r}: use an IANA name such as UTC") from None


def parse_time(
    text: str, tz: tzinfo, formats: Sequence[str] = (), date_at: time = time(0)
) -> datetime:
    """A timestamp from an export, always timezone-aware.

    ISO 8601 (with `Z` or an offset, kept as given) is tried first, then `formats`
    (strptime). A time without an offset is local time in `tz` (so DST is applied);
    a date alone is placed at `date_at` on that day, in `tz`.
    """
    value = text.strip()
    if not value:
        raise BadValue("empty")
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        for pattern in formats:
            try:
                parsed = datetime.strptime(value, pattern)
                break
            except ValueError:
                continue
    if parsed is None:
        expected = ", ".join(["ISO 8601", *formats])
        raise BadValue(f"{value!r} is not a time ({expected})")
    if _date_only(value, parsed):
        parsed = datetime.combine(parsed.date(), date_at)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=tz)


def _date_only(text: str, parsed: datetime) -> bool:
    return parsed.tzinfo is None and parsed.time() == time(0) and ":" not in text


def parse_money(text: str) -> Decimal | None:
    """An amount such as `1,054`, `$1054.50` or `1054`; empty is None; refused past the cent."""
    value = text.strip().lstrip("$€£¥").replace(",", "").replace(" ", "")
    if not value:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise BadValue(f"{text!r} is not an amount") from None
    if not amount.is_finite() or amount < 0:
        raise BadValue(f"{text!r} is not an amount of zero or more")
    try:
        return exact_to_the_cent(amount).quantize(CENT)
    except ValueError as exc:
        raise BadValue(str(exc)) from None
    except ArithmeticError:  # more digits than Decimal keeps
        raise BadValue(f"{text!r} is too large an amount") from None


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}


def parse_bool(text: str) -> bool:
    """A flag as exports write it: true/false, 1/0, yes/no (empty is false)."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadValue(f"{text!r} is not true or false")


def slug(name: str) -> str:
    """A name as an id part: ASCII, lower case, runs of anything else as one hyphen.

    `Darcel Schlecht` -> `darcel-schlecht`, `Genco Pura Olive Oil Company` ->
    `genco-pura-olive-oil-company`. Names that differ only in case or punctuation
    get the same slug, on purpose: they are the same customer or rep, spelled apart.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    value = _NOT_SLUG.sub("-", ascii_name.lower()).strip("-")
    if not value:
        raise BadValue(f"{name!r} has no letters or digits to make an id from")
    return value


def ident(prefix: str, *parts: str) -> str:
    """An event-model id `prefix:part:...`: parts that are not id-safe are slugged; an id
    longer than 128 characters keeps its start and ends in a hash of the whole."""
    safe = [part if _ID_PART.match(part) else slug(part) for part in parts]
    value = ":".join([prefix, *safe])
    if len(value) <= MAX_ID:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:20]
    return f"{value[: MAX_ID - 21]}={digest}"


def hashed_id(prefix: str, kind: str, *values: str) -> str:
    """An event id for a row without a key of its own: a hash of its kind and values."""
    digest = hashlib.sha256("\x1f".join([kind, *values]).encode()).hexdigest()[:24]
    return f"{prefix}:{kind}:{digest}"


def first_of(row: Mapping[str, str], *names: str) -> str:
    """The first non-empty value among columns that exports name differently; else ``""``."""
    for name in names:
        value = row.get(name, "").strip()
        if value:
            return value
    return ""


def build(
    model: type[EventBase], source: str, location: str, fields: Mapping[str, Any]
) -> EventBase | Refused:
    """The event, or Refused naming each field the model would not accept (None fields
    are left out, so the model's defaults apply)."""
    try:
        return model(**{key: value for key, value in fields.items() if value is not None})
    except ValidationError as exc:
        reason = "; ".join(str(problem) for problem in problems_from(exc))
        return Refused(source, location, f"not a valid {model.__name__} event: {reason}")
