"""Budget periods: UTC calendar months (thresholds, forecast) and UTC days (spike), and USD in integer nanos."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

NANOS = Decimal(1_000_000_000)
# Markers outlive their period by a day, so a replica whose clock lags a little cannot re-fire at the boundary.
GRACE = timedelta(days=1)


def month_id(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m")


def day_id(day: date) -> str:
    return day.isoformat()


def month_start(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def month_end(at: datetime) -> datetime:
    """The first instant of the next month."""
    start = month_start(at)
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


def elapsed_fraction(at: datetime) -> float:
    start, end = month_start(at), month_end(at)
    return (at - start) / (end - start)


def trailing_days(today: date, count: int = 7) -> list[date]:
    return [today - timedelta(days=i) for i in range(count, 0, -1)]


def to_nanos(usd: Decimal) -> int:
    """Integer nano-dollars: Redis adds integers exactly, and 2^63 nanos is 9 billion USD."""
    return int((usd * NANOS).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def from_nanos(nanos: int) -> Decimal:
    return (Decimal(nanos) / NANOS).quantize(Decimal("0.000000001"))
