"""The webhook sender: Slack-compatible messages, retries with backoff, nothing dropped."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from pydantic import SecretStr

from projections.deal.alerts import AlertKind, check_stalls
from projections.deal.alerts import StallThresholds as Thresholds
from projections.deal.value_stream import deal_value_stream
from projections.policy.model import default_policy
from streams.settings import Settings
from streams.worker.webhook import WebhookSender, slack_message
from tests.support.deal_builders import DealScript, march


def episode() -> tuple[Any, Any]:
    script = DealScript(deal_id="acme-1", account_id="acme").opened(march(2, 9))
    script.call(march(20, 9), 20)
    stream = deal_value_stream(script.events, default_policy(), march(21, 0))
    stalled, unstalled = check_stalls(stream, "acme", Thresholds(default_policy())).alerts
    return stalled, unstalled


def test_a_stalled_alert_reads_as_a_slack_message_naming_deal_stage_and_threshold() -> None:
    stalled, _ = episode()
    message = slack_message(stalled)

    assert stalled.kind is AlertKind.STALLED
    assert message["text"].startswith(":hourglass: Deal *acme-1* stalled in Prospecting")
    assert "14 d 0 h (threshold 14 d 0 h, fixed)" in message["text"]
    assert [block["type"] for block in message["blocks"]] == ["section", "section", "context"]
    assert "Account acme" in message["blocks"][1]["text"]["text"]
    assert stalled.alert_id in message["blocks"][2]["elements"][0]["text"]


def test_an_unstalled_alert_says_what_ended_it_and_the_waste_while_stalled() -> None:
    _, unstalled = episode()
    text = slack_message(unstalled)["text"]

    assert "no longer stalled in Prospecting (value added touch) after 4 d 0 h" in text
    assert "waste while stalled 4 d 0 h" in text


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _serving(
    statuses: list[int], run: Callable[[str, list[dict[str, Any]]], Awaitable[None]]
) -> list[dict[str, Any]]:
    """Serve on 127.0.0.1, answering with `statuses` in turn (then 200), while `run` runs."""
    seen: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append({"id": request.headers["X-Gemba-Alert-Id"], "body": await request.json()})
        return web.Response(status=statuses.pop(0) if statuses else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await run(f"http://127.0.0.1:{port}/hook", seen)
    finally:
        await runner.cleanup()
    return seen


def test_a_refused_delivery_is_retried_with_doubling_delays_until_it_is_taken() -> None:
    delays: list[float] = []
    attempts: list[int] = []

    async def pause(seconds: float) -> None:
        delays.append(seconds)

    async def run(url: str, seen: list[dict[str, Any]]) -> None:
        sender = WebhookSender(SecretStr(url), retry_s=0.5, retry_max_s=1.5, sleep=pause)
        async with aiohttp.ClientSession() as session:
            attempts.append(await sender.deliver(session, "a-1", {"text": "hi"}))

    seen = asyncio.run(_serving([503, 500, 429, 502], run))

    assert attempts == [5]
    assert delays == [0.5, 1.0, 1.5, 1.5]
    assert [s["id"] for s in seen] == ["a-1"] * 5
    assert seen[-1]["body"] == {"text": "hi"}


def test_an_unreachable_receiver_is_retried_not_dropped() -> None:
    delays: list[float] = []
    port = _port()

    async def pause(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 3:
            raise asyncio.CancelledError  # the worker stopping: the only way out

    async def run() -> None:
        url = SecretStr(f"http://127.0.0.1:{port}/hook")
        sender = WebhookSender(url, timeout_s=1, sleep=pause)
        async with aiohttp.ClientSession() as session:
            await sender.deliver(session, "a-2", {"text": "hi"})

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(run())
    assert delays == [0.5, 1.0, 2.0]


SLACK_URL = "https://hooks.slack.com/services/T0SECRET1/B0SECRET2/x0SECRET3token"


def test_the_webhook_url_is_a_secret_shown_by_no_repr_str_or_dump_of_the_settings() -> None:
    settings = Settings(alert_webhook_url=SLACK_URL)
    sender = WebhookSender(settings.alert_webhook_url or SecretStr(""))

    shown = [
        repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump()),
        repr(settings.model_dump()), repr(sender), str(sender),
    ]  # fmt: skip

    assert settings.alert_webhook_url is not None
    assert settings.alert_webhook_url.get_secret_value() == SLACK_URL
    for text in shown:
        assert "SECRET" not in text
        assert "hooks.slack.com" not in text


def test_a_failed_delivery_is_logged_without_the_webhook_url() -> None:
    """A receiver that redirects (to itself, for ever) was followed until aiohttp gave up,
    and the error logged quoted the URL, path and all."""
    secret_path = "/hook/T0SECRET1/B0SECRET2"

    async def run() -> list[dict[str, Any]]:
        async def moved(request: web.Request) -> web.Response:
            raise web.HTTPFound(secret_path)

        app = web.Application()
        app.router.add_route("*", secret_path, moved)
        runner = web.AppRunner(app)
        await runner.setup()
        port = _port()
        await web.TCPSite(runner, "127.0.0.1", port).start()

        async def stop(seconds: float) -> None:
            raise asyncio.CancelledError  # the worker stopping after the first failure

        sender = WebhookSender(SecretStr(f"http://127.0.0.1:{port}{secret_path}"), sleep=stop)
        try:
            with structlog.testing.capture_logs() as logs:
                async with aiohttp.ClientSession() as session:
                    with contextlib.suppress(asyncio.CancelledError):
                        await sender.deliver(session, "a-3", {"text": "hi"})
        finally:
            await runner.cleanup()
        return logs

    logs = asyncio.run(run())

    assert [entry["event"] for entry in logs] == ["alert_delivery_failed"]
    assert "SECRET" not in repr(logs)
    assert logs[0]["reason"] == "HTTP 302"
