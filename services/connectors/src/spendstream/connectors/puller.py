"""One round of a connector: read the provider from its cursor (and the trailing window) up to today, window by
window, publish each day, then advance the cursor.

Each window's days are published before the cursor moves past them, so a crash in between reads them again
(no gap), and a day published twice replaces itself (its record key, `ProviderDay.key`: no double count). A
`401`/`403` marks the connector `unauthorised` and raises one alert; a provider that keeps failing marks it
`failing` with a code, and the next round resumes from the cursor.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta

from spendstream.common.records import ConnectorRecord, ConnectorState, DataAlert, ProviderDay
from spendstream.connectors.providers import ProviderReader
from spendstream.connectors.providers.paging import MalformedReport
from spendstream.connectors.readonly_http import ProviderUnavailable, ReadOnlyHttp, Unauthorised
from spendstream.connectors.settings import ConnectorsSettings

log = logging.getLogger(__name__)


def unauthorised_alert(connector: ConnectorRecord, at: datetime) -> DataAlert:
    # One per connector and sealed key: a new key that is refused again alerts again.
    digest = hashlib.sha256(f"unauthorised|{connector.connector_id}|{connector.key_version}".encode()).hexdigest()
    return DataAlert(
        alert_id=digest[:32],
        workspace_id=connector.workspace_id,
        kind="connector_unauthorised",
        provider=connector.provider,
        connector_id=connector.connector_id,
        fired_at=at,
    )


class Puller:
    def __init__(
        self,
        settings: ConnectorsSettings,
        readers: dict[str, ProviderReader],
        publish_day: Callable[[ProviderDay], Awaitable[None]],
        save_state: Callable[[ConnectorState], Awaitable[None]],
        alert: Callable[[DataAlert], Awaitable[None]],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._sleep = sleep
        self._readers = readers
        self._publish_day = publish_day
        self._save_state = save_state
        self._alert = alert
        self._now = now

    def base_url(self, provider: str) -> str:
        if provider == "openai":
            return self._settings.connector_openai_base_url
        return self._settings.connector_anthropic_base_url

    def first_day(self, state: ConnectorState | None, today: date) -> date:
        """From the cursor (or the backfill's start), but never later than the trailing window's first day."""
        trailing = today - timedelta(days=self._settings.connector_trailing_days)
        start = state.next_day if state is not None and state.next_day is not None else None
        if start is None:
            start = today - timedelta(days=self._settings.connector_backfill_days)
        return min(start, trailing)

    async def pull(self, connector: ConnectorRecord, admin_key: str, state: ConnectorState | None) -> ConnectorState:
        """One round; returns (and has saved) the connector's new state."""
        reader = self._readers[connector.provider]
        s = self._settings
        http = ReadOnlyHttp(
            self.base_url(connector.provider),
            reader.headers(admin_key),
            max_attempts=s.connector_max_attempts,
            backoff_seconds=s.connector_backoff_seconds,
            max_wait_seconds=s.connector_max_wait_seconds,
            sleep=self._sleep,
        )
        today = self._now().date()
        cursor = state.next_day if state is not None else None
        base = {"connector_id": connector.connector_id, "workspace_id": connector.workspace_id}
        try:
            start = self.first_day(state, today)
            end = today + timedelta(days=1)  # exclusive: today is read too, and re-read until it is trailing
            while start < end:
                stop = min(start + timedelta(days=s.connector_window_days), end)
                days = await reader.read(http, start, stop)
                pulled_at = self._now()
                day = start
                while day < stop:
                    rows = tuple(days.get(day, ()))
                    await self._publish_day(
                        ProviderDay(
                            workspace_id=connector.workspace_id,
                            connector_id=connector.connector_id,
                            provider=connector.provider,
                            day=day,
                            rows=rows,
                            source="api",
                            pulled_at=pulled_at,
                        )
                    )
                    day += timedelta(days=1)
                cursor = max(cursor or stop, stop)
                await self._save_state(
                    ConnectorState(**base, next_day=cursor, status="pending", updated_at=self._now())
                )
                start = stop
        except Unauthorised:
            new = ConnectorState(
                **base, next_day=cursor, status="unauthorised", reason="unauthorised", updated_at=self._now()
            )
            await self._save_state(new)
            if state is None or state.status != "unauthorised":
                await self._alert(unauthorised_alert(connector, self._now()))
            log.warning("provider refused the connector's key", extra={"connector_id": connector.connector_id})
            return new
        except (ProviderUnavailable, MalformedReport) as exc:
            reason = exc.reason if isinstance(exc, ProviderUnavailable) else f"malformed:{exc}"
            new = ConnectorState(**base, next_day=cursor, status="failing", reason=reason, updated_at=self._now())
            await self._save_state(new)
            return new
        finally:
            await http.close()
        done = ConnectorState(**base, next_day=cursor, status="ok", last_success_at=self._now(), updated_at=self._now())
        await self._save_state(done)
        return done
