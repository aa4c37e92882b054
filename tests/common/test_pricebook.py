"""The price book: each event priced by the version in force on its UTC day and by its workspace's rates."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from pydantic import ValidationError

from spendstream.common.events import SealedEvent
from spendstream.common.pricebook import (
    BASE_VERSION_ID,
    PriceBook,
    PriceVersion,
    PriceVersionCodec,
    TenantRate,
    VersionRecord,
    digest_of,
    version_id,
)
from spendstream.common.prices import PriceTable

CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def table(**prices: tuple[float, float]) -> dict[str, Any]:
    return {
        model: {"input_cost_per_token": i, "output_cost_per_token": o, "cache_read_input_token_cost": i / 10}
        for model, (i, o) in prices.items()
    }


def version(raw_table: dict[str, Any], day: date, created: datetime = CREATED) -> VersionRecord:
    raw = json.dumps(raw_table).encode()
    digest = digest_of(raw)
    meta = PriceVersion(
        version_id=version_id(day, digest),
        effective_from=day,
        created_at=created,
        source="file:test.json",
        digest=digest,
        models=len(raw_table),
        status="active",
    )
    return VersionRecord(meta, raw)


def event(ts: datetime, model: str = "m1", provider: str = "openai", cost: str | None = None) -> SealedEvent:
    return SealedEvent(
        event_id="e",
        provider=provider,
        model=model,
        input_tokens=1000,
        output_tokens=100,
        cached_input_tokens=400,
        reasoning_tokens=None,
        latency_ms=1,
        cost_usd=cost,
        timestamp=ts,
        tags={},
    )


def rate(rate_id: str, **fields: Any) -> TenantRate:
    values: dict[str, Any] = {
        "rate_id": rate_id,
        "workspace_id": "ws-a",
        "effective_from": date(2026, 3, 1),
        "created_at": CREATED,
        "created_by": "test",
    }
    values.update(fields)
    return TenantRate(**values)


OLD = table(m1=(1e-6, 2e-6), m2=(3e-6, 4e-6))
NEW = table(m1=(2e-6, 4e-6), m2=(3e-6, 4e-6))
# 600 uncached at input, 400 cached at input/10, 100 output.
OLD_COST = Decimal("0.00084")  # 600*1e-6 + 400*1e-7 + 100*2e-6
NEW_COST = Decimal("0.00168")


@pytest.fixture
def book() -> PriceBook:
    return PriceBook(PriceTable(OLD, "base"))


def test_a_dated_version_prices_exactly_the_events_from_its_day(book: PriceBook) -> None:
    new = version(NEW, date(2026, 3, 10))
    book.put_version(new)
    before = datetime(2026, 3, 9, 23, 59, 59, 999000, tzinfo=UTC)
    after = datetime(2026, 3, 10, 0, 0, tzinfo=UTC)
    assert book.cost("ws-a", event(before)) == (OLD_COST, f"table:{BASE_VERSION_ID}")
    assert book.cost("ws-a", event(after)) == (NEW_COST, f"table:{new.meta.version_id}")


def test_the_day_is_the_utc_day_of_the_timestamp(book: PriceBook) -> None:
    book.put_version(version(NEW, date(2026, 3, 10)))
    # 01:00 on the 10th in UTC+2 is 23:00 on the 9th in UTC.
    local = datetime(2026, 3, 10, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert book.cost("ws-a", event(local))[0] == OLD_COST


def test_a_held_version_prices_nothing_until_it_is_active(book: PriceBook) -> None:
    new = version(NEW, date(2026, 3, 10))
    held = new.with_meta(new.meta.model_copy(update={"status": "held"}))
    book.put_version(held)
    ts = datetime(2026, 3, 11, tzinfo=UTC)
    assert book.cost("ws-a", event(ts))[0] == OLD_COST
    assert [v.version_id for v in book.held()] == [new.meta.version_id]
    book.put_version(new)
    assert book.cost("ws-a", event(ts))[0] == NEW_COST and book.held() == []


def test_two_versions_of_one_day_the_later_created_wins(book: PriceBook) -> None:
    day = date(2026, 3, 10)
    later = version(table(m1=(5e-6, 5e-6), m2=(1e-6, 1e-6)), day, CREATED.replace(hour=5))
    book.put_version(later)
    book.put_version(version(NEW, day))
    assert book.cost("ws-a", event(datetime(2026, 3, 10, tzinfo=UTC)))[1] == f"table:{later.meta.version_id}"


def test_a_reported_cost_passes_through_with_no_ref(book: PriceBook) -> None:
    assert book.cost("ws-a", event(CREATED, cost="0.5")) == (Decimal("0.5"), "")


def test_an_unpriced_model_is_none_never_zero(book: PriceBook) -> None:
    assert book.cost("ws-a", event(CREATED, model="nobody-prices-this")) == (None, "")


def test_a_discount_applies_only_to_its_workspace_matching_models_and_days(book: PriceBook) -> None:
    book.put_rate(rate("disc", provider="openai", model="m*", kind="discount", percent=Decimal("25")))
    in_force = datetime(2026, 3, 1, tzinfo=UTC)
    assert book.cost("ws-a", event(in_force)) == (Decimal("0.00063"), f"rate:disc/table:{BASE_VERSION_ID}")
    assert book.cost("ws-b", event(in_force)) == (OLD_COST, f"table:{BASE_VERSION_ID}")  # another workspace
    assert book.cost("ws-a", event(in_force, provider="azure"))[1] == f"table:{BASE_VERSION_ID}"  # another provider
    assert book.cost("ws-a", event(datetime(2026, 2, 28, 23, tzinfo=UTC)))[0] == OLD_COST  # before its day


def test_a_markup_is_a_percent_over_the_version_in_force(book: PriceBook) -> None:
    new = version(NEW, date(2026, 3, 10))
    book.put_version(new)
    book.put_rate(rate("up", kind="markup", percent=Decimal("10")))
    ts = datetime(2026, 3, 12, tzinfo=UTC)
    assert book.cost("ws-a", event(ts)) == (Decimal("0.001848"), f"rate:up/table:{new.meta.version_id}")


def test_a_fixed_rate_prices_every_token_kind_itself() -> None:
    book = PriceBook(PriceTable(OLD, "base"))
    book.put_rate(
        rate(
            "fixed",
            model="private-model",
            kind="fixed",
            input=Decimal("0.000002"),
            output=Decimal("0.00001"),
            cached_input=Decimal("0.0000001"),
        )
    )
    # Not in the table at all, yet priced by the rate: 600*2e-6 + 400*1e-7 + 100*1e-5.
    ts = datetime(2026, 3, 2, tzinfo=UTC)
    assert book.cost("ws-a", event(ts, model="private-model")) == (Decimal("0.00224"), "rate:fixed")
    # Cache writes (a part of the input) at the cache-write rate, which defaults to the input rate.
    writes = msgspec.structs.replace(event(ts, model="private-model"), cache_creation_input_tokens=200)
    assert book.cost("ws-a", writes)[0] == Decimal("0.00224")
    book.put_rate(
        rate(
            "fixed",
            model="private-model",
            kind="fixed",
            input=Decimal("0.000002"),
            output=Decimal("0.00001"),
            cached_input=Decimal("0.0000001"),
            cache_write=Decimal("0.0000025"),
        )
    )
    # 400*2e-6 + 400*1e-7 + 200*2.5e-6 + 100*1e-5
    assert book.cost("ws-a", writes) == (Decimal("0.00234"), "rate:fixed")


def test_the_most_specific_rate_wins_then_the_latest(book: PriceBook) -> None:
    book.put_rate(rate("any", kind="discount", percent=Decimal("10")))
    book.put_rate(rate("glob", model="m*", kind="discount", percent=Decimal("20")))
    book.put_rate(rate("exact", model="m1", kind="discount", percent=Decimal("30")))
    book.put_rate(
        rate("exact-later", model="m1", kind="discount", percent=Decimal("40"), effective_from=date(2026, 4, 1))
    )
    assert book.cost("ws-a", event(datetime(2026, 3, 5, tzinfo=UTC)))[1].startswith("rate:exact/")
    assert book.cost("ws-a", event(datetime(2026, 4, 5, tzinfo=UTC)))[1].startswith("rate:exact-later/")
    assert book.cost("ws-a", event(datetime(2026, 3, 5, tzinfo=UTC), model="m2"))[1].startswith("rate:glob/")
    book.drop_rate("ws-a", "glob")
    assert book.cost("ws-a", event(datetime(2026, 3, 5, tzinfo=UTC), model="m2"))[1].startswith("rate:any/")


def test_a_percent_of_an_unpriced_model_is_unpriced(book: PriceBook) -> None:
    book.put_rate(rate("any", kind="discount", percent=Decimal("10")))
    assert book.cost("ws-a", event(datetime(2026, 3, 5, tzinfo=UTC), model="unknown-x")) == (None, "")


def test_rates_are_validated() -> None:
    with pytest.raises(ValidationError, match="needs input and output"):
        rate("r", kind="fixed", input=Decimal("0.1"))
    with pytest.raises(ValidationError, match="at most 100 percent"):
        rate("r", kind="discount", percent=Decimal("150"))
    with pytest.raises(ValidationError, match="no per-token prices"):
        rate("r", kind="markup", percent=Decimal("5"), input=Decimal("0.1"))
    with pytest.raises(ValidationError):
        rate("bad id with spaces", kind="markup", percent=Decimal("5"))


def test_the_codec_round_trips_and_refuses_a_table_that_does_not_match_its_digest() -> None:
    codec = PriceVersionCodec()
    record = version(NEW, date(2026, 3, 10))
    decoded = codec.decode(codec.encode(record))
    assert decoded.meta == record.meta and decoded.raw == record.raw
    assert dict(decoded.table.items()) == dict(record.table.items())
    tampered = codec.encode(record).replace(b"4e-06", b"4e-09")
    with pytest.raises(ValueError, match="digest"):
        codec.decode(tampered)


def test_a_percent_is_taken_of_the_exact_price_and_rounded_once() -> None:
    book = PriceBook(PriceTable({"tiny": {"input_cost_per_token": 3.3e-10, "output_cost_per_token": 0}}, "base"))
    book.put_rate(rate("off", kind="discount", percent=Decimal("25")))
    call = msgspec.structs.replace(
        event(datetime(2026, 3, 5, tzinfo=UTC), model="tiny"), input_tokens=6, cached_input_tokens=0, output_tokens=0
    )
    # 6 * 3.3e-10 = 1.98e-9, three quarters of it 1.485e-9: one nano-dollar (rounding 1.98e-9 first would make two).
    assert book.cost("ws-a", call) == (Decimal("0.000000001"), "rate:off/table:0")
