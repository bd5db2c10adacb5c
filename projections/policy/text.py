"""Find the line of a policy file where a key is defined, to point errors at it."""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["key_lines", "line_of"]

_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_DOTTED_KEY = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_TABLE = re.compile(rf"^\s*\[\[?\s*({_DOTTED_KEY})\s*\]\]?\s*(?:#.*)?$")
_ASSIGNMENT = re.compile(rf"^\s*({_DOTTED_KEY})\s*=")
_PART = re.compile(_KEY_PART)


def _split_key(dotted: str) -> tuple[str, ...]:
    return tuple(part.strip("\"'") for part in _PART.findall(dotted))


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map every table and key path the text defines to its 1-based line number.

    A scan, not a parser: it runs only on text tomllib has already accepted,
    and it skips the inside of multi-line strings. Keys inside inline tables
    are not found; their parent key is.
    """
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    in_multiline = False
    for number, line in enumerate(text.splitlines(), start=1):
        quotes = line.count('"""') + line.count("'''")
        if in_multiline:
            in_multiline = quotes % 2 == 0
            continue
        if header := _TABLE.match(line):
            table = _split_key(header.group(1))
            lines.setdefault(table, number)
        elif assignment := _ASSIGNMENT.match(line):
            lines.setdefault(table + _split_key(assignment.group(1)), number)
        in_multiline = quotes % 2 == 1
    return lines


def line_of(lines: dict[tuple[str, ...], int], location: Sequence[str | int]) -> int | None:
    """The line defining the longest prefix of `location` (a key path) that was found."""
    path: list[str] = []
    for part in location:
        if not isinstance(part, str):
            break
        path.append(part)
    while path:
        if (found := lines.get(tuple(path))) is not None:
            return found
        path.pop()
    return None
