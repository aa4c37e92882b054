"""The re-pricing expression equals the writer's price (Price.cost_of) to the nano-dollar, on every entry of the
bundled table, at every tier edge, and on the half-to-even rounding edges."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from decimal import Decimal

import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import given
from hypothesis import strategies as st

from spendstream.common.events import MAX_TOKENS
from spendstream.common.prices import Price, Rates, bundled
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.repricing import literal, priced_sql
from tests.support import Stack

pytestmark = pytest.mark.integration

Counts = tuple[int, int, int, int]  # input, output, cached, reasoning
COLUMNS = "key String, input_tokens UInt64, output_tokens UInt64, cached_input_tokens UInt64, reasoning_tokens UInt64"


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[Client]:
    c = clickhouse_client(stack.clickhouse)
    yield c
    c.close()


def _in_sql(client: Client, rows: Sequence[tuple[str, Price, Counts]]) -> list[Decimal]:
    groups: dict[str, Price] = {}
    for key, price, _ in rows:
        groups.setdefault(key, price)
    cost, source = priced_sql("key", [([key], price) for key, price in groups.items()])
    values = ", ".join(f"({literal(key)}, {i}, {o}, {c}, {r})" for key, _, (i, o, c, r) in rows)
    answer = client.query(
        f"SELECT {cost}, {source} FROM values({literal(COLUMNS)}, {values})",
        settings={"max_query_size": 64 * 1024 * 1024, "max_ast_elements": 10_000_000},
    ).result_rows
    assert {r[1] for r in answer} == {"computed"}
    return [Decimal(r[0]) for r in answer]


def _agree(client: Client, rows: Sequence[tuple[str, Price, Counts]]) -> None:
    expected = [price.cost_of(*counts) for _, price, counts in rows]
    got = _in_sql(client, rows)
    mismatches = [(r[0], r[2], e, g) for r, e, g in zip(rows, expected, got, strict=True) if e != g]
    assert not mismatches, mismatches[:5]


def _counts(rng: random.Random, input_tokens: int) -> list[Counts]:
    """Around one input size: no parts, every part, all of it cached or reasoning, a random mix."""
    output = rng.randint(0, 50_000)
    return [
        (input_tokens, output, 0, 0),
        (input_tokens, output, input_tokens, output),
        (input_tokens, output, rng.randint(0, input_tokens), rng.randint(0, output)),
    ]


def test_every_entry_of_the_bundled_table_at_every_tier_edge_is_priced_as_the_writer_prices_it(client: Client) -> None:
    rng = random.Random(22)
    rows = []
    for key, price in bundled()._prices.items():
        sizes = [0, 1, rng.randint(2, 100_000), MAX_TOKENS]
        for threshold, _ in price.tiers:
            sizes += [threshold, threshold + 1]
        for size in sizes:
            rows += [(key, price, counts) for counts in _counts(rng, size)]
    for i in range(0, len(rows), 4000):
        _agree(client, rows[i : i + 4000])


def test_exact_halves_round_to_even_as_decimal_quantize_does(client: Client) -> None:
    half = Price(Decimal("5E-10"), Decimal("1.5E-9"), Decimal("2.5E-10"), Decimal("3.5E-9"))
    rows = [
        ("h", half, (i, o, c, r)) for i in range(0, 6) for o in range(0, 4) for c in range(0, i + 1) for r in (0, o)
    ]
    _agree(client, rows)


def test_a_long_context_tier_bills_the_whole_request_at_its_rates(client: Client) -> None:
    tiered = Price(
        Decimal("1.25E-6"),
        Decimal("1E-5"),
        Decimal("3.125E-7"),
        None,
        ((200_000, Rates(Decimal("2.5E-6"), Decimal("1.5E-5"), Decimal("6.25E-7"), None)),),
    )
    rows = [("t", tiered, (n, 1000, n // 3, 0)) for n in (199_999, 200_000, 200_001, 1_000_000)]
    _agree(client, rows)
    # 133,334 uncached at 2.5e-6 + 66,667 cached at 6.25e-7 + 1,000 output at 1.5e-5, all at the tier's rates.
    assert _in_sql(client, rows[2:3]) == [Decimal("0.390001875")]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(bundled()._prices)),
            st.integers(0, MAX_TOKENS),
            st.integers(0, MAX_TOKENS),
            st.floats(0, 1),
            st.floats(0, 1),
        ),
        min_size=1,
        max_size=50,
    )
)
def test_any_counts_of_any_entry_agree(client: Client, draws: list[tuple[str, int, int, float, float]]) -> None:
    table = bundled()
    rows = []
    for key, i, o, cached_share, reasoning_share in draws:
        price = table.get(key)
        assert price is not None
        rows.append((key, price, (i, o, int(i * cached_share), int(o * reasoning_share))))
    _agree(client, rows)


def test_a_key_no_group_names_is_unknown_at_zero(client: Client) -> None:
    cost, source = priced_sql("key", [])
    answer = client.query(f"SELECT {cost}, {source} FROM values({literal(COLUMNS)}, ('x', 10, 10, 0, 0))")
    assert answer.result_rows == [(Decimal(0), "unknown")]
