"""The writer's price of an event as a ClickHouse expression, for re-pricing millions of stored rows in place.

The writer prices an event with `Price.cost` (prices.py): a sum of token counts times the rates of the call
(`Price.call_rates`, which depend on the service tier and on the long-context thresholds the input crosses),
rounded to the nano-dollar with Decimal's default rounding (half to even). For every valid event that sum is
exact in Python (token counts are at most events.MAX_TOKENS, 10 digits, and a table rate has at most 17
significant digits, so each product and the sum stay within Decimal's 28 digits), so evaluating the same sum
exactly in integers and rounding half to even gives the same nano-dollars. Here:
  * the rates come from `Price.call_rates` itself, once per service tier and per interval between the entry's
    thresholds (`Price.input_breakpoints`), never from a second copy of the table's rules;
  * the sum is rewritten per stored column (input, cache reads, cache writes, their one-hour part, output,
    reasoning) and evaluated in ClickHouse Decimals of the rates' largest scale (Decimal128, or Decimal256 when
    the bound requires it), where products and sums are exact, and nothing rounds until the final half-to-even
    step to 9 places (roundBankers).
A price book's quote (pricebook.Quote) is priced the same way: a percent rate multiplies the exact sum by its
factor before the one rounding; a fixed rate is a sum of its own rates.
tests/rollup/test_repricing.py proves the agreement with `Price.cost_of` on every entry of the bundled table,
every service tier, every threshold edge, with and without each part, and on the rounding edges (exact halves),
and with `Quote.cost` for percent and fixed rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from spendstream.common.events import MAX_TOKENS
from spendstream.common.pricebook import Quote, TenantRate
from spendstream.common.prices import NANO, CallRates, Price

NANO_PLACES = -int(NANO.as_tuple().exponent)
# The stored token columns of usage_events the expression reads, in the order of _coefficients.
COLUMNS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def literal(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _coefficients(r: CallRates) -> tuple[Decimal, ...]:
    """Price.exact_cost's sum, per stored column (COLUMNS): with read = cached if reads_apart else 0 and
    written = writes if writes_apart else 0, it is (input - read - written) * input + read * cache_read
    + (written - writes_1h) * cache_write + writes_1h * cache_write_1h + (output - reasoning) * output
    + reasoning * reasoning."""
    return (
        r.input,
        r.cache_read - r.input if r.reads_apart else Decimal(0),
        r.cache_write - r.input if r.writes_apart else Decimal(0),
        r.cache_write_1h - r.cache_write,
        r.output,
        r.reasoning - r.output,
    )


def _places(rate: Decimal) -> int:
    exponent = rate.normalize().as_tuple().exponent
    assert isinstance(exponent, int), "a table rate is finite"
    return max(0, -exponent)


def _intervals(price: Price, service_tier: str) -> list[tuple[int | None, tuple[Decimal, ...]]]:
    """(input size above which, coefficients) from the highest breakpoint down, the rates below the lowest last
    (None); neighbours with the same rates merged."""
    tier = service_tier or None
    found: list[tuple[int | None, tuple[Decimal, ...]]] = [(None, _coefficients(price.call_rates(0, tier)))]
    for breakpoint in price.input_breakpoints():
        coefficients = _coefficients(price.call_rates(breakpoint + 1, tier))
        if coefficients != found[-1][1]:
            found.append((breakpoint, coefficients))
    return found[::-1]


def _scaled_sum(coefficients: Sequence[Decimal], scale: int, decimal_type: str) -> str:
    parts = []
    for column, rate in zip(COLUMNS, coefficients, strict=True):
        if rate:
            parts.append(f"to{decimal_type}({column}, 0) * to{decimal_type}('{rate:f}', {scale})")
    return " + ".join(parts) or f"to{decimal_type}(0, {scale})"


def _fixed(rate: TenantRate) -> tuple[Decimal, ...]:
    """A fixed rate's sum per stored column (pricebook.Quote.cost): (input - cached - writes) * input + output
    * output + cached * cached_input + writes * cache_write, the one-hour part and reasoning at no rate of
    their own."""
    assert rate.input is not None and rate.output is not None  # TenantRate checks a fixed one
    cached = rate.cached_input if rate.cached_input is not None else rate.input
    write = rate.cache_write if rate.cache_write is not None else rate.input
    return (rate.input, cached - rate.input, write - rate.input, Decimal(0), rate.output, Decimal(0))


def cost_sql(price: Price, service_tier: str, factor: Decimal | None = None) -> str:
    """The Decimal(18, 9) cost of one stored row of `service_tier` under `price`: `Price.cost_of` of its counts,
    or, with a percent rate's `factor`, the exact price times it rounded once (pricebook.Quote.cost)."""
    return _priced(_intervals(price, service_tier), factor)


def quote_sql(quote: Quote, service_tier: str) -> str:
    """The Decimal(18, 9) cost of one stored row of `service_tier` under a price book's quote (Quote.cost)."""
    if quote.price is not None:
        return cost_sql(quote.price, service_tier, quote.factor)
    assert quote.rate is not None
    return _priced([(None, _fixed(quote.rate))], None)


def _priced(intervals: Sequence[tuple[int | None, tuple[Decimal, ...]]], factor: Decimal | None) -> str:
    rates = [rate for _, coefficients in intervals for rate in coefficients]
    scale = max([NANO_PLACES, *map(_places, rates)])
    factor_places = _places(factor) if factor is not None else 0
    # Each of six terms is at most MAX_TOKENS times its rate, as an integer of 10^-scale (times the factor's
    # integer): Decimal128 holds 38 digits, Decimal256 76.
    bound = 6 * MAX_TOKENS * max(abs(int(rate.scaleb(scale))) for rate in rates)
    if factor is not None:
        bound *= abs(int(factor.scaleb(factor_places)))
    decimal_type = "Decimal128" if bound < 10**38 and scale + factor_places <= 38 else "Decimal256"
    branches = []
    for threshold, coefficients in intervals:
        if threshold is not None:
            branches.append(f"input_tokens > {threshold}")
        branches.append(_scaled_sum(coefficients, scale, decimal_type))
    exact = branches[0] if len(branches) == 1 else f"multiIf({', '.join(branches)})"
    if factor is not None:
        exact = f"({exact}) * to{decimal_type}('{factor:f}', {factor_places})"
    # roundBankers on a Decimal rounds the exact value half to even at 9 places, as Decimal.quantize does.
    return f"toDecimal64(roundBankers({exact}, {NANO_PLACES}), {NANO_PLACES})"


def priced_sql(key_sql: str, groups: Sequence[tuple[Sequence[str], str, str]]) -> tuple[str, str, str]:
    """(cost_usd, cost_source, price_ref) expressions for rows whose `key_sql` value names their price: each
    group is (keys, cost expression, ref) of one price; a key in no group is unpriced ('unknown' at zero, ref
    '', as the writer stores it)."""
    keys = [key for key_values, _, _ in groups for key in key_values]
    numbers = [str(i + 1) for i, (key_values, _, _) in enumerate(groups) for _ in key_values]
    group = f"transform({key_sql}, [{', '.join(map(literal, keys))}], [{', '.join(numbers)}], 0)" if keys else "0"
    costs, refs = [], []
    for i, (_, cost, ref) in enumerate(groups):
        costs += [f"{group} = {i + 1}", cost]
        refs += [f"{group} = {i + 1}", literal(ref)]
    cost = f"multiIf({', '.join(costs)}, toDecimal64(0, 9))" if costs else "toDecimal64(0, 9)"
    ref = f"multiIf({', '.join(refs)}, '')" if refs else "''"
    source = f"if({group} = 0, 'unknown', 'computed')"
    return cost, source, ref
