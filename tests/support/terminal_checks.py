"""What "shown literally" means on a terminal, stated independently of streams.cli.terminal_text."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from hypothesis import strategies as st

__all__ = ["MARKUP_AND_CONTROLS", "acts_on_terminal", "assert_literal", "shown", "untrusted"]

MARKUP_AND_CONTROLS = (
    "[/x]", "[bold]", "[/]", "[link=https://example.com/a]", "[red on white]", ":smile:",
    "\x1b[31m", "\x1b]8;;http://x\x1b\\", "\x1b[2J", "\x07", "\x00", "\x08", "\r", "\n", "\t",
    "\x7f", "\x9b", "\x85", "\u202e", "\u2066", "\u200f", "\u2028", "\\", "[", "]", "{0}",
)  # fmt: skip
BIDI = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def acts_on_terminal(char: str) -> bool:
    """What a terminal may act on instead of showing (the test's own statement of the rule)."""
    return unicodedata.category(char) in {"Cc", "Cs", "Zl", "Zp"} or ord(char) in BIDI


def shown(text: str) -> str:
    """How `text` must appear: characters a terminal acts on as their Python escapes."""
    named = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
    return "".join(
        named.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
        if acts_on_terminal(c)
        else c
        for c in text
    )


def _field(text: str) -> str:
    """Text as an event field keeps it (pydantic strips the ends); never empty."""
    return text.strip() or "x"


untrusted = (
    st.lists(
        st.one_of(st.sampled_from(MARKUP_AND_CONTROLS), st.text(max_size=4)),
        min_size=1,
        max_size=4,
    )
    .map("".join)
    .map(_field)
)
"""Short, so that no cell of a 2,000-column console wraps."""


def _unwrapped(text: str) -> str:
    """Without whitespace: a title longer than its table wraps at a space."""
    return "".join(text.split())


def assert_literal(output: str, texts: Sequence[str]) -> None:
    """Each text is in the output as `shown` says, and nothing a terminal acts on is, but the
    newlines between lines."""
    for text in texts:
        assert _unwrapped(shown(text)) in _unwrapped(output), f"{text!r} not shown literally"
    raw = sorted({c for c in output if c != "\n" and acts_on_terminal(c)})
    assert not raw, f"raw control characters printed: {raw!r}"
