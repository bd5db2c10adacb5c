"""`gemba serve`: the value stream as a web dashboard on 127.0.0.1.

The server (aiohttp) reads the history archive read-only, opening it for each
request, and follows the stall alerts topic; every view has a JSON endpoint under
/api/ and a page drawn by the browser from it (vanilla JS, SVG and CSS shipped in
static/). Nothing is loaded from another host.
"""

from __future__ import annotations

__all__: list[str] = []
