"""Billed amounts as the providers report them, made the one unit spendstream stores: a decimal in the
currency's major unit (dollars for USD), with the currency as lowercase ISO 4217.

OpenAI's costs give `amount.value` in the major unit already; Anthropic's cost report gives `amount` as decimal
text in the currency's lowest unit (cents for USD: "123.45" is $1.2345), so it is scaled by the currency's
minor-unit exponent.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from spendstream.connectors.providers.paging import MalformedReport

# ISO 4217 currencies whose lowest unit is not a hundredth of the major unit; every other one has two decimals.
MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(("bif", "clp", "djf", "gnf", "isk", "jpy", "kmf", "krw", "pyg", "rwf", "ugx", "vnd"), 0),
    **dict.fromkeys(("vuv", "xaf", "xof", "xpf"), 0),
    **dict.fromkeys(("bhd", "iqd", "jod", "kwd", "lyd", "omr", "tnd"), 3),
}
CURRENCY = re.compile(r"^[a-z]{3}$")


def currency_code(value: Any) -> str:
    """The report's currency as lowercase ISO 4217 (absent: usd, the providers' only billing currency today)."""
    code = str(value or "usd").lower()
    if not CURRENCY.match(code):
        raise MalformedReport("invalid_currency")
    return code


def decimal_amount(value: Any) -> Decimal:
    """A finite decimal from a JSON number (decoded as Decimal or int) or decimal text."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise MalformedReport("invalid_amount")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise MalformedReport("invalid_amount") from None
    if not amount.is_finite():
        raise MalformedReport("invalid_amount")
    return amount


def from_lowest_unit(amount: Decimal, currency: str) -> Decimal:
    """An amount in the currency's lowest unit (cents) as the major unit (dollars), exactly."""
    return amount.scaleb(-MINOR_UNITS.get(currency, 2))


def add_cost(row: dict[str, Any], amount: Decimal, currency: str) -> None:
    """Add a billed amount (major unit) to a row; one row is billed in one currency."""
    if row.get("currency") not in (None, currency):
        raise MalformedReport("mixed_currency")
    row["currency"] = currency
    row["cost"] = (row["cost"] or Decimal(0)) + amount
