"""Billed amounts in one unit: the currency's major unit, scaled from the lowest by ISO 4217's minor units."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from spendstream.connectors.providers.money import add_cost, currency_code, decimal_amount, from_lowest_unit
from spendstream.connectors.providers.paging import MalformedReport


@pytest.mark.parametrize(
    ("lowest", "currency", "major"),
    [
        ("123.45", "usd", "1.2345"),
        ("1", "eur", "0.01"),
        ("-250", "usd", "-2.50"),
        ("700", "jpy", "700"),
        ("1234", "kwd", "1.234"),
    ],
)
def test_an_amount_in_the_lowest_unit_becomes_the_major_unit_exactly(lowest: str, currency: str, major: str) -> None:
    assert from_lowest_unit(Decimal(lowest), currency) == Decimal(major)


@pytest.mark.parametrize("value", [None, True, "NaN", "Infinity", "12,5", "", [1], {"value": 1}])
def test_an_amount_that_is_no_finite_decimal_is_a_malformed_report(value: Any) -> None:
    with pytest.raises(MalformedReport, match="invalid_amount"):
        decimal_amount(value)


def test_a_currency_is_three_letters_lowercased_and_usd_when_absent() -> None:
    assert currency_code("USD") == "usd" and currency_code(None) == "usd"
    with pytest.raises(MalformedReport, match="invalid_currency"):
        currency_code("US dollars")


def test_one_row_is_billed_in_one_currency() -> None:
    row: dict[str, Any] = {"cost": None, "currency": None}
    add_cost(row, Decimal("1.5"), "usd")
    add_cost(row, Decimal("0.25"), "usd")
    assert row == {"cost": Decimal("1.75"), "currency": "usd"}
    with pytest.raises(MalformedReport, match="mixed_currency"):
        add_cost(row, Decimal(1), "eur")
