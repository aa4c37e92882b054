"""The re-pricing expression equals the writer's price (Price.cost_of) to the nano-dollar, on every entry of the
bundled table, on every service tier it prices, at every threshold edge, and on the half-to-even rounding edges."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import given
from hypothesis import strategies as st

from spendstream.common.events import MAX_TOKENS
from spendstream.common.pricebook import PriceBook, TenantRate
from spendstream.common.prices import Price, PriceTable, bundled
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.repricing import cost_sql, literal, priced_sql, quote_sql
from tests.support import Stack

pytestmark = pytest.mark.integration

# input, output, cached reads, reasoning, cache writes, their one-hour part
Counts = tuple[int, int, int, int, int, int]
Row = tuple[str, Price, str, Counts]  # table key, price, service tier, counts
COLUMNS = (
    "n UInt32, input_tokens UInt64, output_tokens UInt64, cached_input_tokens UInt64, "
    "reasoning_tokens UInt64, cache_creation_input_tokens UInt64, cache_creation_1h_input_tokens UInt64"
)
TIERS = ("", "batch", "flex", "priority")


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[Client]:
    c = clickhouse_client(stack.clickhouse)
    yield c
    c.close()


def _writer(price: Price, tier: str, counts: Counts) -> Decimal:
    i, o, c, r, w, h = counts
    return price.cost_of(i, o, c, r, cache_writes=w, cache_writes_1h=h, service_tier=tier or None)


def _in_sql(client: Client, rows: Sequence[Row]) -> list[Decimal]:
    """Each distinct expression over its own rows (a UNION ALL of one SELECT per expression: a dispatch over
    thousands of them would cost rows x expressions; entries with the same rates share one), in the rows'
    order."""
    groups: dict[str, list[tuple[int, Counts]]] = {}
    for n, (_, price, tier, counts) in enumerate(rows):
        groups.setdefault(cost_sql(price, tier), []).append((n, counts))
    selects = []
    for cost, members in groups.items():
        values = ", ".join(f"({n}, {', '.join(map(str, counts))})" for n, counts in members)
        selects.append(f"SELECT n, {cost} FROM values({literal(COLUMNS)}, {values})")
    by_row: dict[int, Decimal] = {}
    for i in range(0, len(selects), 200):
        answer = client.query(
            " UNION ALL ".join(selects[i : i + 200]),
            settings={"max_query_size": 64 * 1024 * 1024, "max_ast_elements": 10_000_000},
        ).result_rows
        by_row.update((int(n), Decimal(cost)) for n, cost in answer)
    return [by_row[n] for n in range(len(rows))]


def _agree(client: Client, rows: Sequence[Row]) -> None:
    expected = [_writer(price, tier, counts) for _, price, tier, counts in rows]
    got = _in_sql(client, rows)
    mismatches = [(r[0], r[2], r[3], e, g) for r, e, g in zip(rows, expected, got, strict=True) if e != g]
    assert not mismatches, mismatches[:5]


def _counts(rng: random.Random, input_tokens: int) -> list[Counts]:
    """Around one input size: no parts; all of it read from cache; all of it written for an hour; a mix."""
    output = rng.randint(0, 50_000)
    reads = rng.randint(0, input_tokens)
    writes = rng.randint(0, input_tokens - reads)
    return [
        (input_tokens, output, 0, 0, 0, 0),
        (input_tokens, output, input_tokens, output, 0, 0),
        (input_tokens, output, 0, 0, input_tokens, input_tokens),
        (input_tokens, output, reads, rng.randint(0, output), writes, rng.randint(0, writes)),
    ]


def _tiers(price: Price) -> list[str]:
    """The standard tier and batch for every entry; flex and priority where the entry names them."""
    named = [t for t in ("flex", "priority") if any(k.endswith(f"_{t}") for k in price.entry)]
    return ["", "batch", *named]


def test_every_entry_of_the_bundled_table_on_every_tier_at_every_threshold_edge_is_priced_as_the_writer_prices_it(
    client: Client,
) -> None:
    rng = random.Random(22)
    rows: list[Row] = []
    for key, price in bundled().items():
        sizes = [0, 1, rng.randint(2, 100_000), MAX_TOKENS]
        for breakpoint in price.input_breakpoints():
            sizes += [breakpoint, breakpoint + 1]
        for tier in _tiers(price):
            for size in sizes:
                rows += [(key, price, tier, counts) for counts in _counts(rng, size)]
    _agree(client, rows)


def _table(**entry: Any) -> Price:
    price = PriceTable({"m": entry}).get("m")
    assert price is not None
    return price


def test_exact_halves_round_to_even_as_decimal_quantize_does(client: Client) -> None:
    half = _table(
        input_cost_per_token=5e-10,
        output_cost_per_token=1.5e-9,
        cache_read_input_token_cost=2.5e-10,
        output_cost_per_reasoning_token=3.5e-9,
        cache_creation_input_token_cost=7.5e-10,
    )
    rows: list[Row] = [
        ("h", half, "", (i, o, c, r, w, 0))
        for i in range(6)
        for o in range(4)
        for c in range(i + 1)
        for w in range(i - c + 1)
        for r in (0, o)
    ]
    _agree(client, rows)


def test_a_long_context_tier_bills_the_whole_request_at_its_rates(client: Client) -> None:
    tiered = _table(
        input_cost_per_token=1.25e-6,
        output_cost_per_token=1e-5,
        cache_read_input_token_cost=3.125e-7,
        input_cost_per_token_above_200k_tokens=2.5e-6,
        output_cost_per_token_above_200k_tokens=1.5e-5,
        cache_read_input_token_cost_above_200k_tokens=6.25e-7,
    )
    rows: list[Row] = [("t", tiered, "", (n, 1000, n // 3, 0, 0, 0)) for n in (199_999, 200_000, 200_001, 1_000_000)]
    _agree(client, rows)
    # 133,334 uncached at 2.5e-6 + 66,667 cached at 6.25e-7 + 1,000 output at 1.5e-5, all at the tier's rates.
    assert _in_sql(client, rows[2:3]) == [Decimal("0.390001875")]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(k for k, _ in bundled().items())),
            st.sampled_from(TIERS),
            st.integers(0, MAX_TOKENS),
            st.integers(0, MAX_TOKENS),
            st.floats(0, 1),
            st.floats(0, 1),
            st.floats(0, 1),
            st.floats(0, 1),
        ),
        min_size=1,
        max_size=50,
    )
)
def test_any_counts_of_any_entry_on_any_tier_agree(
    client: Client, draws: list[tuple[str, str, int, int, float, float, float, float]]
) -> None:
    table = bundled()
    rows: list[Row] = []
    for key, tier, i, o, read_share, reasoning_share, write_share, hour_share in draws:
        price = table.get(key)
        assert price is not None
        reads = int(i * read_share)
        writes = int((i - reads) * write_share)
        counts = (i, o, reads, int(o * reasoning_share), writes, int(writes * hour_share))
        rows.append((key, price, tier, counts))
    _agree(client, rows)


def test_rows_are_dispatched_to_their_price_and_a_key_no_group_names_is_unknown_at_zero(client: Client) -> None:
    cheap, dear = (
        _table(input_cost_per_token=1e-6, output_cost_per_token=2e-6),
        _table(input_cost_per_token=1e-5, output_cost_per_token=2e-5),
    )
    groups = [(["a", "b"], cost_sql(cheap, ""), "table:1"), (["c"], cost_sql(dear, ""), "rate:x")]
    cost, source, ref = priced_sql("key", groups)
    answer = client.query(
        f"SELECT key, {cost}, {source}, {ref} FROM values('key String, input_tokens UInt64, output_tokens UInt64, "
        "cached_input_tokens UInt64, reasoning_tokens UInt64, cache_creation_input_tokens UInt64, "
        "cache_creation_1h_input_tokens UInt64', ('a', 1000, 10, 0, 0, 0, 0), ('c', 1000, 10, 0, 0, 0, 0), "
        "('x', 1000, 10, 0, 0, 0, 0), ('b', 1, 0, 0, 0, 0, 0)) ORDER BY key"
    ).result_rows
    assert answer == [
        ("a", Decimal("0.001020000"), "computed", "table:1"),
        ("b", Decimal("0.000001000"), "computed", "table:1"),
        ("c", Decimal("0.010200000"), "computed", "rate:x"),
        ("x", Decimal(0), "unknown", ""),
    ]


def test_a_price_books_percent_and_fixed_rates_are_priced_as_quote_cost_prices_them(client: Client) -> None:
    book = PriceBook()
    made = datetime(2026, 11, 1, tzinfo=UTC)

    def rate(rate_id: str, model: str, **fields: Any) -> TenantRate:
        return TenantRate(
            rate_id=rate_id,
            workspace_id="w",
            model=model,
            effective_from=date(2026, 1, 1),
            created_at=made,
            created_by="t",
            **fields,
        )

    book.put_rate(rate("off", "gpt-4o*", kind="discount", percent=Decimal("12.345678")))
    book.put_rate(rate("up", "*claude*", kind="markup", percent=Decimal("7.5")))
    book.put_rate(rate("fix", "gemini-*", kind="fixed", input=Decimal("1.23456789012e-7"), output=Decimal("3e-6")))
    book.put_rate(
        rate(
            "fix-all",
            "mistral-*",
            kind="fixed",
            input=Decimal("2e-7"),
            output=Decimal("6e-7"),
            cached_input=Decimal("5e-8"),
            cache_write=Decimal("2.5e-7"),
        )
    )
    rng = random.Random(7)
    models = (
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-mini"),
        ("bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0"),
        ("google", "gemini-2.5-pro"),
        ("mistral", "mistral-large-latest"),
    )
    for provider, model in models:
        quote = book.quote("w", provider, model, date(2026, 11, 1))
        assert quote is not None and quote.ref.startswith("rate:")
        for tier in ("", "batch", "priority"):
            sql = quote_sql(quote, tier)
            rows = []
            for size in (0, 1, 150_000, 250_000, MAX_TOKENS):
                rows += [(size, *c[1:]) for c in _counts(rng, size)]
            values = ", ".join(f"({n}, {', '.join(map(str, c))})" for n, c in enumerate(rows))
            got = [
                Decimal(r[1])
                for r in client.query(
                    f"SELECT n, {sql} FROM values({literal(COLUMNS)}, {values}) ORDER BY n"
                ).result_rows
            ]
            expected = [
                quote.cost(
                    SimpleNamespace(
                        input_tokens=i,
                        output_tokens=o,
                        cached_input_tokens=c,
                        reasoning_tokens=r,
                        cache_creation_input_tokens=w,
                        cache_creation_1h_input_tokens=h,
                        service_tier=tier or None,
                    )
                )
                for i, o, c, r, w, h in rows
            ]
            assert got == expected, (model, tier)
