"""The writer's price of an event as a ClickHouse expression, for re-pricing millions of stored rows in place.

`writes._computed_cost` prices an event with `Price.cost_of`: a sum of token counts times the rates of the
tier the event's input selects, quantized to the nano-dollar with Decimal's default rounding (half to even).
For every valid event that sum is exact in Python (token counts are at most events.MAX_TOKENS, 10 digits, and
a table rate has at most 17 significant digits, so each product and the sum stay within Decimal's 28 digits),
so evaluating the same sum exactly in integers and rounding half to even gives the same nano-dollars. Here:
  * the rates and the tier come from the Price itself (`Price.rates(threshold + 1)` is the tier in force above
    each threshold), never from a second copy of the table's rules;
  * every rate becomes an integer multiple of 10^-scale (scale: the most decimal places of the rates), so
    ClickHouse multiplies and adds integers (Int128, or Int256 when the bound requires it) and nothing rounds
    until the final half-to-even step to 9 places.
tests/rollup/test_repricing.py proves the agreement with `Price.cost_of` on every entry of the bundled table,
every tier, with and without cached and reasoning parts, and on the rounding edges (exact halves).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from spendstream.common.events import MAX_TOKENS
from spendstream.common.prices import NANO, Price, Rates

# Columns of usage_events the expression reads.
_IN = "input_tokens"
_OUT = "output_tokens"
_CACHED = "cached_input_tokens"
_REASONING = "reasoning_tokens"
_INT128_MAX = 2**127 - 1
NANO_PLACES = -int(NANO.as_tuple().exponent)


def literal(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _terms(rates: Rates) -> list[tuple[str, Decimal]]:
    """(token count SQL, rate) pairs whose sum is Price.cost_of's before it rounds: input net of cached reads,
    cached reads (at the input rate when the entry has no cache rate), output net of reasoning when reasoning
    has its own rate, reasoning."""
    terms = [
        (f"({_IN} - {_CACHED})", rates.input),
        (_CACHED, rates.cache_read if rates.cache_read is not None else rates.input),
    ]
    if rates.reasoning is not None:
        terms += [(f"({_OUT} - {_REASONING})", rates.output), (_REASONING, rates.reasoning)]
    else:
        terms.append((_OUT, rates.output))
    return terms


def _places(rate: Decimal) -> int:
    exponent = rate.normalize().as_tuple().exponent
    assert isinstance(exponent, int), "a table rate is finite"
    return max(0, -exponent)


def _tiers(price: Price) -> list[tuple[int | None, Rates]]:
    """(threshold, rates) from the highest threshold down, the base rates last (threshold None)."""
    thresholds = sorted({threshold for threshold, _ in price.tiers}, reverse=True)
    return [(t, price.rates(t + 1)) for t in thresholds] + [(None, price.rates(0))]


def _scaled_sum(rates: Rates, scale: int, int_type: str) -> str:
    parts = []
    for tokens, rate in _terms(rates):
        units = rate.scaleb(scale)
        assert units == units.to_integral_value(), "scale covers every rate's places"
        if units:
            parts.append(f"to{int_type}({tokens}) * to{int_type}('{int(units)}')")
    return " + ".join(parts) or f"to{int_type}(0)"


def cost_sql(price: Price) -> str:
    """The Decimal(18, 9) cost of one stored row under `price`, equal to `Price.cost_of` of its token counts."""
    tiers = _tiers(price)
    all_rates = [rate for _, rates in tiers for _, rate in _terms(rates)]
    scale = max([NANO_PLACES, *map(_places, all_rates)])
    # Each term is at most MAX_TOKENS times its integer rate; four terms at most.
    bound = 4 * MAX_TOKENS * max(int(rate.scaleb(scale)) for rate in all_rates)
    int_type = "Int128" if bound <= _INT128_MAX else "Int256"
    branches = []
    for threshold, rates in tiers:
        if threshold is not None:
            branches.append(f"{_IN} > {threshold}")
        branches.append(_scaled_sum(rates, scale, int_type))
    units = branches[0] if len(branches) == 1 else f"multiIf({', '.join(branches)})"
    nanos = _round_half_even(units, scale - NANO_PLACES, int_type)
    return f"toDecimal64(toDecimal128({nanos}, 0) * toDecimal128('0.{'0' * (NANO_PLACES - 1)}1', {NANO_PLACES}), 9)"


def _round_half_even(units: str, drop: int, int_type: str) -> str:
    """`units` (non-negative) divided by 10^drop, rounded half to even, as Decimal's quantize does by default."""
    if drop == 0:
        return units
    divisor = f"to{int_type}('{10**drop}')"
    quotient = f"intDiv({units}, {divisor})"
    twice_rest = f"(({units}) - {quotient} * {divisor}) * 2"
    up = f"({twice_rest} > {divisor} OR ({twice_rest} = {divisor} AND {quotient} % 2 = 1))"
    return f"({quotient} + {up})"


def priced_sql(key_sql: str, groups: Sequence[tuple[Sequence[str], Price]]) -> tuple[str, str]:
    """(cost_usd, cost_source) expressions for rows whose `key_sql` value names their price: each group's keys
    share one Price; a key in no group is unpriced ('unknown' at zero, as the writer stores it)."""
    keys = [key for key_values, _ in groups for key in key_values]
    numbers = [str(i + 1) for i, (key_values, _) in enumerate(groups) for _ in key_values]
    group = f"transform({key_sql}, [{', '.join(map(literal, keys))}], [{', '.join(numbers)}], 0)" if keys else "0"
    branches = []
    for i, (_, price) in enumerate(groups):
        branches += [f"{group} = {i + 1}", cost_sql(price)]
    cost = f"multiIf({', '.join(branches)}, toDecimal64(0, 9))" if branches else "toDecimal64(0, 9)"
    source = f"if({group} = 0, 'unknown', 'computed')"
    return cost, source
