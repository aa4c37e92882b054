"""UTC calendar months and nano-dollars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from spendstream.alerts.periods import elapsed_fraction, from_nanos, month_end, month_id, to_nanos


def test_months_are_utc_calendar_months_whatever_the_offset_of_the_timestamp() -> None:
    late_evening_in_new_york = datetime(2026, 11, 30, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert month_id(late_evening_in_new_york) == "2026-12"
    assert month_end(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)
    assert elapsed_fraction(datetime(2026, 2, 15, tzinfo=UTC)) == 0.5


def test_nanos_round_trip_exactly() -> None:
    assert to_nanos(Decimal("0.000000001")) == 1
    assert to_nanos(Decimal("123.456789012")) == 123_456_789_012
    assert from_nanos(to_nanos(Decimal("0.1")) * 3) == Decimal("0.3")
