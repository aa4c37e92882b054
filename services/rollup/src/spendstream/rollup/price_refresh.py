"""The scheduled refresh of the price table: fetch `SPENDSTREAM_PRICES_URL`, validate, add a version or hold it.

rollup owns it (it alone knows the models in use, from its store). A fetched table becomes a version from the
next UTC day, so no cost already stored for today was computed under a table that was not in force; a table
that prices as the current one adds nothing; one that would drop a price to zero, move one more than 10x or
remove a model in use is published `held` until an admin approves it (price_holds.py).
"""

from __future__ import annotations

import asyncio
import logging
import urllib.error
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from spendstream.common.price_holds import propose, read_source
from spendstream.common.price_replica import PricePublisher, ReplayedPriceBook
from spendstream.common.pricebook import VersionRecord
from spendstream.rollup import metrics

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PriceRefresher:
    def __init__(
        self,
        url: str,
        pricing: ReplayedPriceBook,
        publisher: PricePublisher,
        models_in_use: Callable[[date], set[tuple[str, str]]],
        in_use_days: int,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._url = url
        self._pricing = pricing
        self._publisher = publisher
        self._models_in_use = models_in_use
        self._in_use_days = in_use_days
        self._clock = clock

    async def run_once(self) -> VersionRecord | None:
        """One refresh; returns the version it published (active or held), None when it added nothing."""
        try:
            raw = await asyncio.to_thread(read_source, self._url)
        except (OSError, urllib.error.URLError):
            metrics.PRICE_REFRESHES.labels("unreachable").inc()
            raise
        except ValueError:
            metrics.PRICE_REFRESHES.labels("invalid").inc()
            raise
        now = self._clock()
        in_use = await asyncio.to_thread(self._models_in_use, now.date() - timedelta(days=self._in_use_days))
        await self._pricing.catch_up()  # compare with what the others published, the CLI included
        try:
            # On the loop, as the replay that changes the book: a daily parse of one table.
            record = propose(self._pricing.book, raw, self._url, now.date() + timedelta(days=1), in_use, now)
        except ValueError:
            metrics.PRICE_REFRESHES.labels("invalid").inc()
            raise
        if record is None:
            metrics.PRICE_REFRESHES.labels("unchanged").inc()
            metrics.PRICES_HELD.set(len(self._pricing.book.held()))
            return None
        await self._publisher.version(record)
        await self._pricing.catch_up()
        outcome = "held" if record.meta.status == "held" else "added"
        metrics.PRICE_REFRESHES.labels(outcome).inc()
        metrics.PRICES_HELD.set(len(self._pricing.book.held()))
        log.info(
            "price version published",
            extra={
                "version": record.meta.version_id,
                "status": record.meta.status,
                "effective_from": record.meta.effective_from.isoformat(),
                "hold_reasons": record.meta.hold_reasons_total,
            },
        )
        return record
