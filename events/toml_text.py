"""TOML text to a document, every way it can fail turned into one error with a position.

The one reader of TOML for every file Gemba is given (policy, assumptions,
import mapping): each caller turns `TomlUnreadable` into its own file error.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

from events.errors import TomlUnreadable

__all__ = ["TomlUnreadable", "parse_toml"]

_AT_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")

MAX_DEPTH = 32
"""Most tables and arrays inside one another a file may hold; Gemba's files need four or so."""

TOO_DEEP = (
    f"TOML nested too deep: tables or arrays inside one another more than {MAX_DEPTH} levels "
    "down; no Gemba file needs more than a few levels, so flatten it"
)


def parse_toml(text: str) -> dict[str, Any]:
    """The document `text` holds; raise TomlUnreadable for bad syntax or nesting too deep."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        if found := _AT_LINE.search(message):
            reason = f"TOML syntax: {message[: found.start()]}"
            raise TomlUnreadable(reason, int(found.group(1)), int(found.group(2))) from None
        raise TomlUnreadable(f"TOML syntax: {message}") from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables by recursion: thousands of levels
        # exhaust the stack before it can say where
        raise TomlUnreadable(TOO_DEEP) from None
    if _depth(document) > MAX_DEPTH:
        # dotted keys and table headers nest without recursion; what reads the document
        # next (validation, hashing) would recurse, so refuse it here the same way
        raise TomlUnreadable(TOO_DEEP)
    return document


def _depth(document: dict[str, Any]) -> int:
    """How many tables and arrays lie inside one another, counted without recursion."""
    deepest = 0
    pending: list[tuple[dict[str, Any] | list[Any], int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        children = value.values() if isinstance(value, dict) else value
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest
