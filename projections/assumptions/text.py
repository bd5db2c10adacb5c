"""Find the line of an assumptions file where a key is defined, arrays of tables included.

Like policy_text, a scan rather than a parser, run only on text tomllib has
accepted. It numbers the elements of arrays of tables (`[[claims]]`) so that
`claims[2].cohort.field` finds the line in the third claim, and the inline
tables of a multi-line array written one per line (`all = [` then `{ ... },`
lines), so that `all[1]` finds the second of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["Path", "key_lines", "line_of"]

Path = tuple[str | int, ...]

_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_DOTTED_KEY = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_ARRAY_TABLE = re.compile(rf"^\s*\[\[\s*({_DOTTED_KEY})\s*\]\]\s*(?:#.*)?$")
_TABLE = re.compile(rf"^\s*\[\s*({_DOTTED_KEY})\s*\]\s*(?:#.*)?$")
_ASSIGNMENT = re.compile(rf"^\s*({_DOTTED_KEY})\s*=\s*(.*)$")
_PART = re.compile(_KEY_PART)


def _split_key(dotted: str) -> tuple[str, ...]:
    return tuple(part.strip("\"'") for part in _PART.findall(dotted))


class _Scan:
    """The state of one scan: the current table, and how many elements each array has."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}
        self.table: Path = ()
        self.counts: dict[Path, int] = {}
        self.items: tuple[Path, int] | None = None  # an open multi-line array of inline tables

    def resolve(self, parts: Sequence[str]) -> Path:
        resolved: list[str | int] = []
        for part in parts:
            resolved.append(part)
            if (count := self.counts.get(tuple(resolved))) is not None:
                resolved.append(count - 1)
        return tuple(resolved)

    def array_table(self, parts: tuple[str, ...], number: int) -> None:
        array = (*self.resolve(parts[:-1]), parts[-1])
        self.counts[array] = self.counts.get(array, 0) + 1
        self.table = (*array, self.counts[array] - 1)
        self.lines.setdefault(array, number)
        self.lines.setdefault(self.table, number)

    def assignment(self, parts: tuple[str, ...], value: str, number: int) -> None:
        path = self.table + parts
        self.lines.setdefault(path, number)
        if value.strip().startswith("[") and value.count("[") > value.count("]"):
            self.items = (path, 0)

    def array_line(self, line: str, number: int) -> None:
        assert self.items is not None
        path, index = self.items
        text = line.strip()
        if text.startswith("]"):
            self.items = None
        elif text.startswith("{"):
            self.lines.setdefault((*path, index), number)
            self.items = (path, index + 1)


def key_lines(text: str) -> dict[Path, int]:
    """Map every table, key and array element the text defines to its 1-based line number."""
    scan = _Scan()
    in_multiline = False
    for number, line in enumerate(text.splitlines(), start=1):
        quotes = line.count('"""') + line.count("'''")
        if in_multiline:
            in_multiline = quotes % 2 == 0
            continue
        if scan.items is not None:
            scan.array_line(line, number)
        elif header := _ARRAY_TABLE.match(line):
            scan.array_table(_split_key(header.group(1)), number)
        elif header := _TABLE.match(line):
            scan.table = scan.resolve(_split_key(header.group(1)))
            scan.lines.setdefault(scan.table, number)
        elif assignment := _ASSIGNMENT.match(line):
            scan.assignment(_split_key(assignment.group(1)), assignment.group(2), number)
        in_multiline = quotes % 2 == 1
    return scan.lines


def line_of(lines: dict[Path, int], location: Path) -> int | None:
    """The line defining the longest prefix of `location` that was found."""
    path = list(location)
    while path:
        if (found := lines.get(tuple(path))) is not None:
            return found
        path.pop()
    return None
