"""Delivering a fired alert to its budget's webhooks and e-mail addresses.

Runs in its own consumer group on `alerts.fired.v1`, so the Kafka record is the outbox: the offset is committed
only after every channel reached a final state (delivered or dead-lettered). Per channel:
  * the delivery log says `delivered`/`dead_lettered` -> nothing to do (a redelivered record or a replay);
  * a short Redis lock keeps two replicas from sending the same channel at once during a rebalance;
  * attempts back off exponentially with full jitter; a permanent refusal (4xx, private address, SMTP 5xx)
    or `delivery_max_attempts` failures dead-letter the channel: its log says so and a metric counts it.
A crash after a send and before its log entry re-sends on redelivery (at-least-once): receivers recognise the
repeat by `X-Spendstream-Delivery`, which is the alert id.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import redis.asyncio as aioredis

from spendstream.alerts import metrics
from spendstream.alerts.budgets import BudgetBook
from spendstream.alerts.delivery_log import FINAL, ChannelState, DeliveryLog, LoggedAlert
from spendstream.alerts.keyspace import KeySpace
from spendstream.alerts.mail import MailSender
from spendstream.alerts.settings import AlertsSettings
from spendstream.alerts.webhooks import Failed, Refused, WebhookSender
from spendstream.common.records import BudgetRecord, DataAlert, FiredAlert

log = logging.getLogger(__name__)


def describe(alert: FiredAlert, budget: BudgetRecord) -> dict[str, object]:
    """The webhook body: the alert record plus the budget's name and scope, looked up now."""
    return {
        **alert.model_dump(mode="json"),
        "budget": {"name": budget.name, "scope": budget.scope.model_dump() if budget.scope else None},
    }


def subject(alert: FiredAlert, budget: BudgetRecord) -> str:
    if alert.kind == "threshold":
        return f"[spendstream] {budget.name}: {alert.threshold_pct}% of the {alert.period} budget reached"
    if alert.kind == "forecast":
        return f"[spendstream] {budget.name}: projected to exceed the {alert.period} budget"
    return f"[spendstream] {budget.name}: spend spike on {alert.period}"


def data_subject(alert: DataAlert) -> str:
    if alert.kind == "completeness_gap":
        return f"[spendstream] completeness: {alert.gap_events} events differ at the {alert.stage} stage on {alert.day}"
    # Short enough to stay on one header line for usual ids; the figures travel in the body and the webhook.
    if alert.kind in ("margin_customer", "margin_plan"):
        who = f"customer {alert.customer_id}" if alert.kind == "margin_customer" else f"plan {alert.customer_plan}"
        return f"[spendstream] {who}: AI cost > {alert.threshold_pct}% of {alert.month} revenue"
    if alert.kind == "provider_drift":
        return (
            f"[spendstream] {alert.provider}/{alert.model} on {alert.day}: metered cost differs from the bill by "
            f"{alert.difference_pct}%"
        )
    if alert.kind == "connector_unauthorised":
        return f"[spendstream] the {alert.provider} connector {alert.connector_id} was refused by the provider"
    return f"[spendstream] no price for {alert.provider}/{alert.model} ({alert.events} events)"


@dataclass(frozen=True, slots=True)
class AddressedDataAlert:
    """A data alert on its way to one budget's channels, logged with that budget's alerts."""

    alert: DataAlert
    budget_id: str

    @property
    def workspace_id(self) -> str:
        return self.alert.workspace_id

    @property
    def alert_id(self) -> str:
        return self.alert.alert_id

    @property
    def kind(self) -> str:
        return self.alert.kind

    @property
    def period(self) -> str:
        return self.alert.day or ""

    @property
    def threshold_pct(self) -> int | None:
        return None

    @property
    def fired_at(self) -> datetime:
        return self.alert.fired_at


class Dispatcher:
    def __init__(
        self,
        settings: AlertsSettings,
        redis: aioredis.Redis,
        keys: KeySpace,
        book: BudgetBook,
        delivery_log: DeliveryLog,
        webhooks: WebhookSender,
        mail: MailSender,
        acknowledge: Callable[[FiredAlert], Awaitable[object]],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._keys = keys
        self._book = book
        self._log = delivery_log
        self._webhooks = webhooks
        self._mail = mail
        self._acknowledge = acknowledge
        self._sleep = sleep
        self._mail_hash_key = hmac.new(settings.kek_bytes(), b"spendstream.alerts.mail-id", hashlib.sha256).digest()

    def mail_channel(self, address: str) -> str:
        return "mail_" + hmac.new(self._mail_hash_key, address.lower().encode(), hashlib.sha256).hexdigest()[:16]

    async def handle(self, alert: FiredAlert) -> None:
        """Returns once every channel of the alert is delivered or dead-lettered."""
        # The record exists, so its marker may say sent even if the replica that fired it died before saying so.
        await self._acknowledge(alert)
        budget = self._book.get(alert.workspace_id, alert.budget_id)
        if budget is None:
            await self._book.table.catch_up()
            budget = self._book.get(alert.workspace_id, alert.budget_id)
        if budget is None:
            # Deleted (or erased) since it fired: nobody left to tell.
            metrics.DELIVERIES.labels("none", "budget_gone").inc()
            return
        await self._log.open(alert)
        body = json.dumps(describe(alert, budget), separators=(",", ":")).encode()
        jobs: list[Awaitable[None]] = []
        for hook in budget.webhooks:
            secret = self._book.box.open(budget, hook)
            send_hook = partial(self._webhooks.send, hook.url, secret, alert.alert_id, body)
            jobs.append(self._deliver(alert, hook.webhook_id, "webhook", send_hook))
        text = json.dumps(describe(alert, budget), indent=2)
        for address in budget.emails:
            send_mail = partial(self._mail.send, address, subject(alert, budget), text, alert.alert_id)
            jobs.append(self._deliver(alert, self.mail_channel(address), "email", send_mail))
        await asyncio.gather(*jobs)

    async def handle_data(self, alert: DataAlert) -> None:
        """Deliver a data alert (rollup.alerts.v1) to every channel of the workspace's budgets, each channel
        (webhook URL, e-mail address) once; returns once every one is delivered or dead-lettered."""
        budgets = self._book.of_workspace(alert.workspace_id)
        if not budgets:  # or the budget table has not replayed them yet
            await self._book.table.catch_up()
            budgets = self._book.of_workspace(alert.workspace_id)
        if not budgets:
            # No budget, so no channel: the alert stays on the topic and in rollup's metric and log.
            metrics.DELIVERIES.labels("none", "no_channel").inc()
            return
        body = json.dumps(alert.model_dump(mode="json"), separators=(",", ":")).encode()
        text = json.dumps(alert.model_dump(mode="json"), indent=2)
        urls: set[str] = set()
        addresses: set[str] = set()
        jobs: list[Awaitable[None]] = []
        for budget in budgets:
            addressed = AddressedDataAlert(alert, budget.budget_id)
            await self._log.open(addressed)
            for hook in budget.webhooks:
                if hook.url in urls:
                    continue
                urls.add(hook.url)
                secret = self._book.box.open(budget, hook)
                send_hook = partial(self._webhooks.send, hook.url, secret, alert.alert_id, body)
                jobs.append(self._deliver(addressed, hook.webhook_id, "webhook", send_hook))
            for address in budget.emails:
                if address.lower() in addresses:
                    continue
                addresses.add(address.lower())
                send_mail = partial(self._mail.send, address, data_subject(alert), text, alert.alert_id)
                jobs.append(self._deliver(addressed, self.mail_channel(address), "email", send_mail))
        await asyncio.gather(*jobs)

    def _backoff(self, attempt: int) -> float:
        """Exponential with full jitter: spreads retries of many alerts to one receiver that came back."""
        ceiling = min(
            self._settings.delivery_backoff_max_seconds, self._settings.delivery_backoff_seconds * 2 ** (attempt - 1)
        )
        return random.uniform(ceiling / 2, ceiling)

    async def _deliver(
        self, alert: LoggedAlert, channel: str, kind: str, send: Callable[[], Awaitable[object]]
    ) -> None:
        lock = self._keys.delivery_lock(alert.workspace_id, alert.alert_id, channel)
        lock_seconds = int(self._settings.webhook_timeout_seconds + self._settings.delivery_backoff_max_seconds + 30)
        if not await self._redis.set(lock, b"1", nx=True, ex=lock_seconds):
            return  # another replica is on it; the record's redelivery finds the result in the log
        try:
            state = await self._log.state(alert, channel)
            if state is not None and state.status in FINAL:
                return
            attempts = state.attempts if state is not None else 0
            while True:
                attempts += 1
                metrics.DELIVERY_ATTEMPTS.labels(kind).inc()
                await self._redis.expire(lock, lock_seconds)
                try:
                    await send()
                except Refused as exc:
                    await self._final(alert, channel, kind, "dead_lettered", attempts, exc.code)
                    return
                except Failed as exc:
                    if attempts >= self._settings.delivery_max_attempts:
                        await self._final(alert, channel, kind, "dead_lettered", attempts, exc.code)
                        return
                    await self._log.record(alert, channel, ChannelState("retrying", attempts, exc.code, time.time()))
                    await self._sleep(self._backoff(attempts))
                    continue
                await self._final(alert, channel, kind, "delivered", attempts, None)
                return
        finally:
            await self._redis.delete(lock)

    async def _final(
        self, alert: LoggedAlert, channel: str, kind: str, status: str, attempts: int, code: str | None
    ) -> None:
        await self._log.record(
            alert,
            channel,
            ChannelState("delivered" if status == "delivered" else "dead_lettered", attempts, code, time.time()),
        )
        metrics.DELIVERIES.labels(kind, status).inc()
        if status != "delivered":
            log.warning(
                "delivery dead-lettered",
                extra={"alert_id": alert.alert_id, "channel": channel, "attempts": attempts, "code": code},
            )
