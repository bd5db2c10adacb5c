"""The root error of the running system; the CLI prints its message and exits non-zero."""

from __future__ import annotations

__all__ = ["GembaError"]


class GembaError(Exception):
    """Something the user can fix; the message says what was wrong and what to do."""
