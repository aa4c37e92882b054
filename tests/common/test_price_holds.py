"""What a new price table may do alone, and what waits for an admin: zero prices, 10x moves, removed models."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from spendstream.common.price_holds import MIN_PRICED_MODELS, approved, hold_reasons, propose, public_source
from spendstream.common.pricebook import PriceBook
from spendstream.common.prices import PriceTable

NOW = datetime(2026, 3, 1, tzinfo=UTC)
DAY = date(2026, 3, 2)


def table(**overrides: dict[str, Any] | None) -> dict[str, Any]:
    """MIN_PRICED_MODELS filler models plus m1 and m2; an override of None removes the model."""
    data: dict[str, Any] = {
        f"filler-{i}": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6} for i in range(MIN_PRICED_MODELS)
    }
    data["m1"] = {"input_cost_per_token": 1e-6, "output_cost_per_token": 4e-6, "cache_read_input_token_cost": 1e-7}
    data["m2"] = {"input_cost_per_token": 3e-6, "output_cost_per_token": 6e-6}
    for name, entry in overrides.items():
        if entry is None:
            del data[name]
        else:
            data[name] = {**data.get(name, {}), **entry}
    return data


def raw(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


BASE = PriceTable(table(), "base")


def test_an_ordinary_change_is_active_at_once() -> None:
    record = propose(PriceBook(BASE), raw(table(m1={"input_cost_per_token": 9e-6})), "x.json", DAY, set(), NOW)
    assert record is not None and record.meta.status == "active" and record.meta.effective_from == DAY


def test_a_price_dropped_to_zero_or_moved_more_than_10x_either_way_is_held() -> None:
    new = PriceTable(
        table(
            m1={"output_cost_per_token": 0, "cache_read_input_token_cost": 1.1e-6},
            m2={"input_cost_per_token": 2.9e-7},
        )
    )
    reasons = {(r.kind, r.key, r.field) for r in hold_reasons(BASE, new, set())}
    assert reasons == {
        ("zero", "m1", "output_cost_per_token"),
        ("moved_10x", "m1", "cache_read_input_token_cost"),
        ("moved_10x", "m2", "input_cost_per_token"),
    }


def test_exactly_10x_is_not_held() -> None:
    new = PriceTable(table(m2={"input_cost_per_token": 3e-5, "output_cost_per_token": 6e-7}))
    assert hold_reasons(BASE, new, set()) == []


def test_a_removed_model_holds_only_when_in_use_or_when_use_is_unknown() -> None:
    new = PriceTable(table(m2=None))
    assert hold_reasons(BASE, new, {("openai", "m1")}) == []
    [reason] = hold_reasons(BASE, new, {("openai", "m2-2024-05-01")})  # a dated spelling resolves to m2
    assert (reason.kind, reason.key) == ("removed_in_use", "openai/m2-2024-05-01")
    [reason] = hold_reasons(BASE, new, None)
    assert (reason.kind, reason.key) == ("removed", "m2")


def test_a_table_that_prices_the_same_or_is_already_there_adds_nothing() -> None:
    book = PriceBook(BASE)
    same_prices = table()
    same_prices["m1"]["max_tokens"] = 4096  # not a price
    assert propose(book, raw(same_prices), "x.json", DAY, set(), NOW) is None
    changed = raw(table(m1={"input_cost_per_token": 2e-6}))
    record = propose(book, changed, "x.json", DAY, set(), NOW)
    assert record is not None
    book.put_version(record)
    assert propose(book, changed, "x.json", DAY, set(), NOW) is None


def test_a_change_of_any_token_price_is_a_change_and_of_a_limit_is_not() -> None:
    book = PriceBook(BASE)
    cache_writes = raw(table(m1={"cache_creation_input_token_cost": 1.25e-6}))
    record = propose(book, cache_writes, "x.json", DAY, set(), NOW)
    assert record is not None and record.meta.status == "active"
    assert propose(book, raw(table(m1={"max_input_tokens": 128000})), "x.json", DAY, set(), NOW) is None


def test_a_held_table_waits_once_and_approval_activates_it() -> None:
    book = PriceBook(BASE)
    zeroed = raw(table(m1={"input_cost_per_token": 0}))
    record = propose(book, zeroed, "x.json", DAY, set(), NOW)
    assert record is not None and record.meta.status == "held" and record.meta.hold_reasons_total == 1
    book.put_version(record)
    assert propose(book, zeroed, "x.json", DAY, set(), NOW) is None  # the same table does not wait twice
    assert book.table_at(DAY)[0] == "0"
    book.put_version(approved(book, record.meta.version_id, "test", NOW))
    assert book.table_at(DAY)[0] == record.meta.version_id and book.held() == []
    with pytest.raises(KeyError):
        approved(book, record.meta.version_id, "test", NOW)  # no longer held


def test_what_is_not_a_table_is_refused() -> None:
    book = PriceBook(BASE)
    with pytest.raises(ValueError, match="not JSON"):
        propose(book, b"<html>", "x.json", DAY, set(), NOW)
    with pytest.raises(ValueError, match="not a JSON object"):
        propose(book, b"[1]", "x.json", DAY, set(), NOW)
    with pytest.raises(ValueError, match="fewer than"):
        propose(book, raw({"m": {"input_cost_per_token": 1, "output_cost_per_token": 1}}), "x.json", DAY, set(), NOW)


def test_a_source_is_stored_without_credentials_or_query() -> None:
    assert public_source("https://user:pw@prices.example:8443/t.json?token=abc") == "https://prices.example:8443/t.json"
    assert public_source("/home/op/tables/litellm.json") == "file:litellm.json"
