"""One rule for every web port Gemba serves: a request must name this server in its Host.

A web page can make a browser send requests to 127.0.0.1 through a DNS name it controls
(DNS rebinding): the Host header then carries that name. So the dashboard and the worker's
web server answer only requests addressed to a loopback name, to a name the server knows
as its own, or to one listed in GEMBA_ALLOWED_HOSTS; others get 421 (Misdirected Request).
The port is not part of the rule: a rebinding page is refused by its name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

__all__ = ["LOOPBACK_NAMES", "host_allowed", "host_guard", "host_name"]

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
"""Names every Gemba web server answers to."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def host_name(host: str) -> str:
    """The name in a Host header (or an allow-list entry): no port, no brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):  # an IPv6 address, as a URL writes it
        return host[1:].partition("]")[0]
    return host.partition(":")[0].rstrip(".")


def host_allowed(host: str | None, names: Iterable[str]) -> bool:
    """True when the Host header names one of `names` (or a loopback name)."""
    allowed = LOOPBACK_NAMES | {host_name(name) for name in names}
    return host is not None and host_name(host) in allowed - {""}


def host_guard(names: Callable[[], Iterable[str]], server: str) -> Middleware:
    """aiohttp middleware refusing (421) requests addressed to a host not in `names()` (read
    at the first request; loopback names are always in); `server` names the server in the
    refusal, e.g. "the dashboard"."""
    known: list[frozenset[str]] = []

    def allowed() -> frozenset[str]:
        if not known:
            known.append(frozenset(LOOPBACK_NAMES | {host_name(n) for n in names()} - {""}))
        return known[0]

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not host_allowed(request.headers.get("Host"), allowed()):
            error = (
                f"{server} answers to the host names {', '.join(sorted(allowed()))} only: ask "
                "it by one of them, or add the name you use to GEMBA_ALLOWED_HOSTS"
            )
            return web.Response(
                status=421, body=orjson.dumps({"error": error}), content_type="application/json"
            )
        return await handler(request)

    return guard
