"""Contact ids replaced by keyed pseudonyms before they are stored: personal data minimised."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import TypeVar

import orjson

from events.errors import EventRejected, FieldProblem
from events.models import EventBase

__all__ = ["MIN_KEY_BYTES", "PSEUDONYM_PREFIX", "Pseudonymiser", "is_pseudonym"]

PSEUDONYM_PREFIX = "p:"
DIGEST_HEX_CHARS = 32
"""128 bits of the HMAC-SHA256: no two contacts of any real CRM share a pseudonym."""
MIN_KEY_BYTES = 16
_PSEUDONYM = re.compile(rf"{PSEUDONYM_PREFIX}[0-9a-f]{{{DIGEST_HEX_CHARS}}}")

E = TypeVar("E", bound=EventBase)


def is_pseudonym(contact_id: str) -> bool:
    """True when `contact_id` already has the form of a pseudonym (`p:` and 32 hex digits)."""
    return _PSEUDONYM.fullmatch(contact_id) is not None


class Pseudonymiser:
    """Replaces each event's `contact_id` by `p:` + the first 32 hex digits of its HMAC-SHA256.

    Deterministic under one key: the same contact always gets the same pseudonym, so a
    contact's touches still line up; without the key nobody can tell who it was or
    check a guess. Nothing else of the event changes (its `event_id` neither). A value
    that already is a pseudonym is left as it is, so publishing a pseudonymised log
    again (an export, a replay) does not hash it twice.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a pseudonymisation key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def __repr__(self) -> str:
        return "Pseudonymiser(key=<hidden>)"

    def pseudonym(self, contact_id: str) -> str:
        """The pseudonym of one contact id."""
        if is_pseudonym(contact_id):
            return contact_id
        digest = hmac.new(self._key, contact_id.encode(), hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + digest[:DIGEST_HEX_CHARS]

    def event(self, event: E) -> E:
        """The same event with its contact id pseudonymised (itself if it names no contact)."""
        if event.contact_id is None or is_pseudonym(event.contact_id):
            return event
        return event.model_copy(update={"contact_id": self.pseudonym(event.contact_id)})

    def encoded(self, value: bytes) -> bytes:
        """An encoded event (JSON object bytes) with its contact id pseudonymised."""
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            problem = FieldProblem("(event)", f"not valid JSON, cannot pseudonymise: {exc}")
            raise EventRejected([problem]) from None
        if not isinstance(document, dict):
            return value
        contact_id = document.get("contact_id")
        if not isinstance(contact_id, str) or is_pseudonym(contact_id):
            return value
        document["contact_id"] = self.pseudonym(contact_id)
        return orjson.dumps(document)
