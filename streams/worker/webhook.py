"""Delivering stall alerts to a webhook as Slack-compatible JSON: each alert once, retried."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import faust
import structlog
from faust.types import EventT, TableT, TopicT
from pydantic import SecretStr, ValidationError

from projections.deal.alerts import AlertKind, StallAlert
from streams.settings import Settings

__all__ = ["DELIVERED_TABLE", "WebhookSender", "attach_webhook_sender", "slack_message"]

log = structlog.get_logger("gemba.webhook")
DELIVERED_TABLE = "delivered-alerts"
ALERT_ID_HEADER = "X-Gemba-Alert-Id"


def _days(span: timedelta) -> str:
    """A duration for people: days and hours, or minutes and seconds when short."""
    seconds = int(span.total_seconds())
    if seconds >= 86_400:
        return f"{seconds // 86_400} d {seconds % 86_400 // 3600} h"
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 60} min {seconds % 60} s"


def _headline(alert: StallAlert) -> str:
    if alert.kind is AlertKind.STALLED:
        silent = _days(alert.occurred_at - alert.silent_since)
        return (
            f":hourglass: Deal *{alert.deal_id}* stalled in {alert.stage}: no value-added touch "
            f"for {silent} (threshold {_days(alert.threshold)}, "
            f"{alert.threshold_basis.describe()})."
        )
    ended = (alert.ended_by or "").replace("_", " ")
    return (
        f":white_check_mark: Deal *{alert.deal_id}* no longer stalled in {alert.stage} "
        f"({ended}) after {_days(alert.time_stalled)}; waste while stalled "
        f"{_days(alert.waste_while_stalled.total)}."
    )


def slack_message(alert: StallAlert) -> dict[str, Any]:
    """The alert as a Slack incoming-webhook message: `text` for notifications, `blocks` to read."""
    headline = _headline(alert)
    last = (
        f"{alert.last_value_added_id} at {alert.last_value_added_at:%Y-%m-%d %H:%M} UTC"
        if alert.last_value_added_at
        else "none"
    )
    details = (
        f"Account {alert.account_id} · owner {alert.owner_id} · "
        f"stalled at {alert.stalled_at:%Y-%m-%d %H:%M} UTC · last value-added touch: {last}"
    )
    return {
        "text": headline,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
            {"type": "section", "text": {"type": "mrkdwn", "text": details}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"alert {alert.alert_id} · policy {alert.policy_version}",
                    }
                ],
            },
        ],
    }


@dataclass(frozen=True)
class WebhookSender:
    """POSTs one message until the receiver takes it (2xx), backing off exponentially.

    Nothing is dropped: every failure is logged with the alert id and retried, the
    delay doubling from `retry_s` up to `retry_max_s`. The alert id travels in the
    X-Gemba-Alert-Id header, so a receiver can recognise a repeat after a crash. The URL
    is a secret (a Slack webhook URL lets its holder post): it shows in no repr and no
    log line, and a redirect is not followed (it counts as a failure, HTTP 3xx).
    """

    url: SecretStr
    timeout_s: float = 10.0
    retry_s: float = 0.5
    retry_max_s: float = 60.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def deliver(
        self, session: aiohttp.ClientSession, alert_id: str, message: dict[str, Any]
    ) -> int:
        """Send until accepted; return the number of attempts it took."""
        delay = self.retry_s
        attempt = 0
        while True:
            attempt += 1
            reason = await self._attempt(session, alert_id, message)
            if reason is None:
                return attempt
            log.warning(
                "alert_delivery_failed",
                alert_id=alert_id,
                attempt=attempt,
                reason=reason,
                retry_in_s=delay,
            )
            await self.sleep(delay)
            delay = min(delay * 2, self.retry_max_s)

    async def _attempt(
        self, session: aiohttp.ClientSession, alert_id: str, message: dict[str, Any]
    ) -> str | None:
        url = self.url.get_secret_value()
        try:
            async with session.post(
                url,
                json=message,
                headers={ALERT_ID_HEADER: alert_id},
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                allow_redirects=False,
            ) as response:
                await response.read()
                return None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _failure(exc, url)


def _failure(exc: BaseException, url: str) -> str:
    """Why an attempt failed, for the log: the error's class and message, the URL masked."""
    if isinstance(exc, aiohttp.ClientResponseError):  # its message quotes the URL
        return f"{exc.__class__.__name__}: HTTP {exc.status}"
    return f"{exc.__class__.__name__}: {exc}".replace(url, "<GEMBA_ALERT_WEBHOOK_URL>")


async def _deliver_one(
    event: EventT[bytes],
    sender: WebhookSender,
    session: aiohttp.ClientSession,
    delivered: TableT[Any, Any],
) -> None:
    message = event.message
    try:
        alert = StallAlert.model_validate_json(message.value or b"")
    except ValidationError as exc:
        log.error(
            "alert_undeliverable", topic=message.topic, partition=message.partition,
            offset=message.offset, reason=str(exc),
        )  # fmt: skip
        return
    if delivered.get(alert.alert_id):
        log.debug("alert_already_delivered", alert_id=alert.alert_id)
        return
    attempts = await sender.deliver(session, alert.alert_id, slack_message(alert))
    delivered[alert.alert_id] = {"attempts": attempts}
    log.info("alert_delivered", alert_id=alert.alert_id, attempts=attempts)


def attach_webhook_sender(app: faust.App, settings: Settings, alerts: TopicT) -> None:
    """Deliver every alert on `alerts` to GEMBA_ALERT_WEBHOOK_URL; nothing when it is unset.

    An agent of the worker's app reads the topic (committed offsets: delivery goes on
    after a restart), one alert at a time per partition, so alerts arrive in order per
    deal. Delivered alert ids live in a changelog-backed table: an alert read again
    (a restart before the offset was committed, or a repeat on the topic) is skipped.
    """
    if settings.alert_webhook_url is None or not settings.alert_webhook_url.get_secret_value():
        return
    sender = WebhookSender(
        settings.alert_webhook_url,
        timeout_s=settings.alert_webhook_timeout_s,
        retry_s=settings.alert_webhook_retry_s,
        retry_max_s=settings.alert_webhook_retry_max_s,
    )
    delivered = app.Table(DELIVERED_TABLE, default=dict)

    @app.agent(alerts, name="deliver-alerts")
    async def deliver_alerts(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            async for event in stream.events():
                await _deliver_one(event, sender, session, delivered)
                yield None
