"""Deciding what fires: each threshold, forecast and spike at most once per budget and period.

Each (budget, period, threshold) has its own marker key - one key shared by all thresholds is how a peer let
the 85 % alert silence the 95 % one. A marker is claimed with a Lua compare-and-set, then the alert is published
to `alerts.fired.v1`, then the marker is set to `sent`:
  * two replicas (or a rebalance, a restart, a replay) evaluating the same budget: one claim wins;
  * a crash after the claim and before the publish: the claim is only a lease; once it is older than
    `claim_lease_seconds` the periodic sweep of any replica takes it over with the same alert id, so the alert
    is late, never lost (claiming for good before the write is the openmeter #5118 mistake);
  * markers expire a day after their period: a new month starts clean.
Levels compare current spend, not the step that crossed them, so a jump over several thresholds fires each,
and an evaluation missed for any reason is made up by the next one.
Changing a budget bumps its revision in Redis and, in the same script, deletes the markers of thresholds whose
new level is above current spend (re-arming them); a replica still holding the older revision claims nothing.
Evaluator decides what to claim; a MarkerStore keeps the markers atomically: RedisMarkerStore with the Lua
scripts below, and the in-memory stand-in of the tests with the same semantics.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

import redis.asyncio as aioredis

from spendstream.alerts.fired import alert_id
from spendstream.alerts.keyspace import KeySpace
from spendstream.alerts.periods import (
    GRACE,
    day_id,
    elapsed_fraction,
    from_nanos,
    month_end,
    month_id,
    to_nanos,
    trailing_days,
)
from spendstream.alerts.spend import SpendCounter
from spendstream.common.records import AlertKind, BudgetRecord, FiredAlert

log = logging.getLogger(__name__)
REVISION_KEEP_SECONDS = 400 * 24 * 3600

_CLAIM = """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) < current then return false end
local marker = redis.call('GET', KEYS[1])
local id = ARGV[5]
if marker then
  local state, ts, held = string.match(marker, '^(%a+):([%d%.]+):(.+)$')
  if state ~= 'pending' then return false end
  if tonumber(ARGV[2]) - tonumber(ts) < tonumber(ARGV[3]) then return false end
  id = held
end
redis.call('SET', KEYS[1], 'pending:' .. ARGV[2] .. ':' .. id, 'EXAT', ARGV[4])
return id
"""

_SENT = """
local marker = redis.call('GET', KEYS[1])
if not marker or string.sub(marker, 1, 8) ~= 'pending:' then return 0 end
if string.sub(marker, -string.len(ARGV[1])) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], 'sent:' .. ARGV[2] .. ':' .. ARGV[1], 'KEEPTTL')
return 1
"""

_REARM = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local spend = tonumber(redis.call('GET', KEYS[2]) or '0')
local rearmed = 0
for i = 3, #KEYS do
  if tonumber(ARGV[i]) > spend then rearmed = rearmed + redis.call('DEL', KEYS[i]) end
end
return rearmed
"""


def threshold_marker(pct: int) -> str:
    return f"threshold-{pct}"


def marker_of(alert: FiredAlert) -> str:
    return threshold_marker(alert.threshold_pct or 0) if alert.kind == "threshold" else alert.kind


def level(amount_usd: Decimal, pct: int) -> int:
    return to_nanos(amount_usd * pct / 100)


class MarkerStore(Protocol):
    """Markers and budget revisions; each call is atomic, as one Lua script run is on one Redis slot."""

    async def claim(
        self, marker: str, revision_key: str, revision: int, now: float, lease: float, expire_at: int, candidate: str
    ) -> str | None:
        """The alert id to publish, or None. Refused when `revision` is older than the recorded one, or the
        marker is `sent`, or it is `pending` and younger than `lease`; a missing marker is claimed with
        `candidate`, an expired lease with the id it holds. The claim is `pending` at `now` until `expire_at`."""
        ...

    async def mark_sent(self, marker: str, alert_id: str, now: float) -> bool:
        """A `pending` marker holding `alert_id` becomes `sent` (its expiry kept); False for anything else."""
        ...

    async def rearm(
        self, revision_key: str, revision: int, keep_seconds: int, spend_key: str, markers: Sequence[tuple[str, int]]
    ) -> int:
        """Record the revision; delete each (marker, level) whose level is above the spend counter's value.
        Returns how many markers were deleted."""
        ...


class RedisMarkerStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._claim = redis.register_script(_CLAIM)
        self._sent = redis.register_script(_SENT)
        self._rearm = redis.register_script(_REARM)

    async def claim(
        self, marker: str, revision_key: str, revision: int, now: float, lease: float, expire_at: int, candidate: str
    ) -> str | None:
        claimed = await self._claim(
            keys=[marker, revision_key], args=[revision, f"{now:.3f}", lease, expire_at, candidate]
        )
        if not claimed:
            return None
        return claimed.decode() if isinstance(claimed, bytes) else str(claimed)

    async def mark_sent(self, marker: str, alert_id: str, now: float) -> bool:
        return bool(await self._sent(keys=[marker], args=[alert_id, f"{now:.3f}"]))

    async def rearm(
        self, revision_key: str, revision: int, keep_seconds: int, spend_key: str, markers: Sequence[tuple[str, int]]
    ) -> int:
        keys = [revision_key, spend_key, *(m for m, _ in markers)]
        return int(await self._rearm(keys=keys, args=[revision, keep_seconds, *(lvl for _, lvl in markers)]))


class Evaluator:
    def __init__(
        self,
        markers: MarkerStore,
        keys: KeySpace,
        spend: SpendCounter,
        publish: Callable[[FiredAlert], Awaitable[None]],
        *,
        lease_seconds: float,
        forecast_min_days: float,
    ) -> None:
        self._markers = markers
        self._keys = keys
        self._spend = spend
        self._publish = publish
        self._lease = lease_seconds
        self._forecast_min_days = forecast_min_days

    def scope_of(self, budget: BudgetRecord) -> str:
        scope = budget.scope
        return self._keys.scope(budget.workspace_id, scope.tag if scope else None, scope.value if scope else None)

    async def evaluate(self, budget: BudgetRecord, now: datetime) -> list[FiredAlert]:
        """Fire whatever this budget has crossed in the current period and not fired yet."""
        ws, scope, month = budget.workspace_id, self.scope_of(budget), month_id(now)
        spent = await self._spend.month_to_date(ws, month, scope)
        amount = to_nanos(budget.amount_usd)
        month_expiry = month_end(now) + GRACE
        fired: list[FiredAlert] = []
        base = {
            "workspace_id": ws,
            "budget_id": budget.budget_id,
            "budget_revision": budget.revision,
            "amount_usd": format(budget.amount_usd, "f"),
            "spend_usd": format(from_nanos(spent), "f"),
        }
        for pct in budget.thresholds:
            if spent >= level(budget.amount_usd, pct):
                alert = await self._fire(
                    budget, month, threshold_marker(pct), month_expiry, now, "threshold", {**base, "threshold_pct": pct}
                )
                if alert is not None:
                    fired.append(alert)
        if budget.forecast and self._forecast_due(now, spent, amount):
            projected = int(spent / elapsed_fraction(now))
            alert = await self._fire(
                budget,
                month,
                "forecast",
                month_expiry,
                now,
                "forecast",
                {**base, "projected_usd": format(from_nanos(projected), "f")},
            )
            if alert is not None:
                fired.append(alert)
        if budget.spike_multiple is not None:
            today = now.date()
            history = await self._spend.days(ws, [*trailing_days(today), today], scope)
            mean = sum(history[:-1]) / 7
            if mean > 0 and history[-1] > mean * float(budget.spike_multiple):
                alert = await self._fire(
                    budget,
                    day_id(today),
                    "spike",
                    now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1) + GRACE,
                    now,
                    "spike",
                    {
                        **base,
                        "period": day_id(today),
                        "spend_usd": format(from_nanos(history[-1]), "f"),
                        "trailing_mean_usd": format(from_nanos(int(mean)), "f"),
                    },
                )
                if alert is not None:
                    fired.append(alert)
        return fired

    def _forecast_due(self, now: datetime, spent: int, amount: int) -> bool:
        """The month-end projection (linear in elapsed time) exceeds the budget, while spend has not yet."""
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        if now - start < timedelta(days=self._forecast_min_days) or spent >= amount or spent == 0:
            return False
        return spent / elapsed_fraction(now) > amount

    async def _fire(
        self,
        budget: BudgetRecord,
        period: str,
        marker: str,
        expires: datetime,
        now: datetime,
        kind: AlertKind,
        fields: dict[str, object],
    ) -> FiredAlert | None:
        key = self._keys.marker(budget.workspace_id, budget.budget_id, period, marker)
        candidate = alert_id(budget.budget_id, budget.revision, period, marker)
        the_id = await self._markers.claim(
            key,
            self._keys.revision(budget.workspace_id, budget.budget_id),
            budget.revision,
            now.timestamp(),
            self._lease,
            int(expires.timestamp()),
            candidate,
        )
        if the_id is None:
            return None
        alert = FiredAlert.model_validate(
            {"period": period, **fields, "alert_id": the_id, "kind": kind, "fired_at": now}
        )
        # Published (and acknowledged) before the marker says sent: a crash in between leaves a lease another
        # replica takes over, never a marker that claims an alert nobody sent. The delivery consumer also marks
        # it sent when the record arrives, so a takeover re-publishes only if that consumer lags the lease.
        await self._publish(alert)
        await self.mark_sent(alert, now)
        log.info("alert fired", extra={"alert_id": the_id, "kind": kind, "budget_id": budget.budget_id})
        return alert

    async def mark_sent(self, alert: FiredAlert, now: datetime) -> bool:
        """Turn this alert's pending claim into `sent` (a no-op for any other state or alert id)."""
        key = self._keys.marker(alert.workspace_id, alert.budget_id, alert.period, marker_of(alert))
        return await self._markers.mark_sent(key, alert.alert_id, now.timestamp())

    async def rearm(self, budget: BudgetRecord, now: datetime) -> int:
        """Record the budget's new revision and re-arm the markers whose new level is above current spend."""
        month = month_id(now)
        markers = [(threshold_marker(p), level(budget.amount_usd, p)) for p in budget.thresholds]
        markers.append(("forecast", to_nanos(budget.amount_usd)))
        return await self._markers.rearm(
            self._keys.revision(budget.workspace_id, budget.budget_id),
            budget.revision,
            REVISION_KEEP_SECONDS,
            self._keys.month_spend(budget.workspace_id, month, self.scope_of(budget)),
            [(self._keys.marker(budget.workspace_id, budget.budget_id, month, m), lvl) for m, lvl in markers],
        )
