"""The one rule for untrusted text on a terminal: shown as itself, control characters escaped."""

from __future__ import annotations

import io
import json

import orjson
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from streams.cli.terminal_text import (
    LiteralTable,
    literal,
    literal_lines,
    printable,
    printable_json,
)
from tests.support.terminal_checks import MARKUP_AND_CONTROLS, acts_on_terminal, shown

any_text = st.lists(st.one_of(st.sampled_from(MARKUP_AND_CONTROLS), st.text())).map("".join)


@given(any_text)
def test_printable_text_is_the_text_with_each_control_character_as_its_escape(text: str) -> None:
    assert printable(text) == shown(text)


@given(st.text().filter(lambda text: not any(map(acts_on_terminal, text))))
def test_text_without_control_characters_is_shown_unchanged(text: str) -> None:
    assert printable(text) == text


def test_escapes_read_like_python_string_escapes() -> None:
    assert (
        printable("a\x1b[31mb\x07\x00\n\t\u202ec\x9b") == "a\\x1b[31mb\\x07\\x00\\n\\t\\u202ec\\x9b"
    )


def test_markup_and_emoji_codes_are_shown_as_written() -> None:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    table = LiteralTable("[bold]", title="[/x] :smile:", caption="[link=https://x]y[/link]")
    table.add_column("[/]")
    table.add_row("[red]not red[/red]", literal_lines(["[/x]", ":smile:"]))

    console.print(table)

    output = console.file.getvalue()  # type: ignore[attr-defined]
    for text in ("[bold]", "[/x] :smile:", "[link=https://x]y[/link]", "[/]", "[red]not red[/red]"):
        assert text in output
    assert "[/x]\n" in output.replace(" ", "").replace("│", "")


def test_a_literal_keeps_its_style_and_not_the_texts() -> None:
    text = literal("[bold]x[/bold]", "red")

    assert text.plain == "[bold]x[/bold]"
    assert str(text.style) == "red"
    assert text.spans == []


json_text = any_text.filter(lambda text: not any(0xD800 <= ord(c) < 0xE000 for c in text))
"""JSON cannot carry a lone surrogate."""
json_documents = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | json_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3),
    max_leaves=8,
)


@given(json_documents)
def test_printable_json_is_the_same_data_with_nothing_a_terminal_acts_on(document: object) -> None:
    by_orjson = orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()
    by_json = json.dumps(document, indent=2, ensure_ascii=False)

    for escaped in (printable_json(by_orjson), printable_json(by_json)):
        assert json.loads(escaped) == document
        assert not [c for c in escaped if c != "\n" and acts_on_terminal(c)]
