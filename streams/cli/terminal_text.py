"""Untrusted text on a terminal, shown as itself: never markup, control characters escaped.

Event fields, SQL results, file names and error reasons reach the terminal as data. Rich
would read `[bold]` or `[/x]` in them as markup (and raise on an unmatched tag) and
`:smile:` as an emoji; a terminal would act on ESC sequences, BEL, NUL or a right-to-left
override. `printable` is the one rule for what such text looks like; `literal` and
`LiteralTable` carry it into rich, `printable_json` into JSON output.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import RenderableType
from rich.style import Style
from rich.table import Column, Table
from rich.text import Text

__all__ = [
    "SHOWN_ESCAPED",
    "LiteralTable",
    "literal",
    "literal_lines",
    "printable",
    "printable_json",
]

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_BIDI_CONTROLS = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
"""Marks, embeddings, overrides and isolates: they reorder what is shown after them."""
_LINE_SEPARATORS = (0x2028, 0x2029)
_SURROGATES = range(0xD800, 0xE000)
SHOWN_ESCAPED = frozenset(
    [*range(0x20), 0x7F, *range(0x80, 0xA0), *_BIDI_CONTROLS, *_LINE_SEPARATORS, *_SURROGATES]
)
"""Code points a terminal may act on rather than show: C0 controls (newline and tab too),
DEL, C1 controls, bidirectional controls, line and paragraph separators, lone surrogates.
Zero-width joiners stay: emoji and several scripts need them, and they move nothing."""


def _escape(point: int) -> str:
    if chr(point) in _NAMED:
        return _NAMED[chr(point)]
    return f"\\x{point:02x}" if point < 0x100 else f"\\u{point:04x}"


_PRINTABLE = {point: _escape(point) for point in SHOWN_ESCAPED}
_JSON_RAW = {point: f"\\u{point:04x}" for point in SHOWN_ESCAPED if chr(point) not in _NAMED}


def printable(text: str) -> str:
    """`text` as a terminal should show it: each character of SHOWN_ESCAPED written as its
    Python escape (`\\x1b`, `\\n`, `\\u202e`), everything else as it is."""
    return text.translate(_PRINTABLE)


def printable_json(document: str) -> str:
    """JSON text with the characters of SHOWN_ESCAPED that JSON allows raw inside strings
    (DEL, C1, bidi controls, line separators) written as `\\uXXXX`: the same data, and
    nothing a terminal acts on. Whitespace between tokens (newline, tab) is kept."""
    return document.translate(_JSON_RAW)


def literal(value: object, style: str | Style = "") -> Text:
    """Any value as rich text shown literally: `printable(str(value))`, no markup, no emoji."""
    return Text(printable(value if isinstance(value, str) else str(value)), style=style)


def literal_lines(values: Iterable[object], style: str | Style = "") -> Text:
    """Several values, each shown literally, one per line (the only line breaks in it)."""
    return Text("\n", style=style).join(literal(value, style) for value in values)


def _cell(value: RenderableType | None) -> RenderableType | None:
    return literal(value) if isinstance(value, str) else value


class LiteralTable(Table):
    """A rich table whose title, caption, headers and string cells are shown literally.

    Cells given as rich `Text` are taken as they are: build them with `literal`."""

    def __init__(
        self,
        *headers: Column | str,
        title: str | Text | None = None,
        caption: str | Text | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            *headers,
            title=literal(title) if isinstance(title, str) else title,
            caption=literal(caption) if isinstance(caption, str) else caption,
            **options,
        )

    def add_column(
        self, header: RenderableType = "", footer: RenderableType = "", **options: Any
    ) -> None:
        """A column whose header and footer (strings) are shown literally."""
        super().add_column(_cell(header) or "", _cell(footer) or "", **options)

    def add_row(self, *cells: RenderableType | None, **options: Any) -> None:
        """A row whose string cells are shown literally."""
        super().add_row(*(_cell(cell) for cell in cells), **options)
