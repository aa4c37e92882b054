"""The CSV import for providers without an API: a valid file becomes one ProviderDay per provider and day, with
the figures summed exactly; a bad line is refused with its line number and field (never its value), and the
whole file is refused with it."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from spendstream.connectors.csv_import import ImportRefused, parse

NOW = datetime(2026, 3, 1, tzinfo=UTC)
GOOD = """day,provider,model,project,input_tokens,cached_input_tokens,output_tokens,requests,cost,currency
2026-02-27,mistral,mistral-large,team-a,1000,100,200,3,0.012,usd
2026-02-27,mistral,mistral-large,team-a,500,0,50,1,0.000000001,usd
2026-02-28,mistral,mistral-small,,10,0,5,1,1.5,EUR
"""


def test_a_valid_file_becomes_one_record_per_provider_and_day_with_exact_sums() -> None:
    days = parse(GOOD, "ws_1", NOW)
    assert [(d.provider, d.day, d.connector_id, d.source) for d in days] == [
        ("mistral", date(2026, 2, 27), "csv-mistral", "csv"),
        ("mistral", date(2026, 2, 28), "csv-mistral", "csv"),
    ]
    (large,) = days[0].rows
    assert (large.model, large.project, large.input_tokens, large.cached_input_tokens) == (
        "mistral-large",
        "team-a",
        1500,
        100,
    )
    assert (large.output_tokens, large.requests, large.cost) == (250, 4, Decimal("0.012000001"))
    (small,) = days[1].rows
    assert (small.currency, small.cost, small.project) == ("eur", Decimal("1.5"), "")


@pytest.mark.parametrize(
    ("line", "field", "code"),
    [
        ("2026-02-30,mistral,m,,1,0,1,1,0.1,usd", "day", "invalid_day"),
        ("2026-02-27,mistral,m,,-4,0,1,1,0.1,usd", "input_tokens", "invalid_count"),
        ("2026-02-27,mistral,m,,4,0,1,1,abc,usd", "cost", "invalid_cost"),
        ("2026-02-27,mistral,m,,4,0,1,1,0.1234567891,usd", "cost", "invalid_cost"),
        ("2026-02-27,mistral,m,,4,9,1,1,0.1,usd", "input_tokens", "parts_exceed_total"),
        ("2026-02-27,Mistral AI,m,,4,0,1,1,0.1,usd", "provider", "invalid_provider"),
        ("2026-02-27,mistral,m,,4,0,1,1,0.1,dollars", "currency", "invalid_currency"),
        ("2026-02-27,mistral,m,,4,0,1", "line", "wrong_field_count"),
    ],
)
def test_a_bad_line_refuses_the_file_naming_line_and_field_never_the_value(line: str, field: str, code: str) -> None:
    text = GOOD + line + "\n"
    with pytest.raises(ImportRefused) as refused:
        parse(text, "ws_1", NOW)
    (error,) = refused.value.errors
    assert (error.line, error.field, error.code) == (5, field, code)
    for value in line.split(","):
        if len(value) > 3:  # the message quotes nothing of the line
            assert value not in error.message


def test_a_header_without_a_required_column_is_refused_on_line_1() -> None:
    with pytest.raises(ImportRefused) as refused:
        parse("day,provider,model,input_tokens,output_tokens\n", "ws_1", NOW)
    assert [(e.line, e.field, e.code) for e in refused.value.errors] == [(1, "cost", "missing_column")]


def test_every_bad_line_is_listed() -> None:
    text = GOOD + "2026-13-01,mistral,m,,1,0,1,1,0.1,usd\n" + "2026-02-27,mistral,m,,1,0,x,1,0.1,usd\n"
    with pytest.raises(ImportRefused) as refused:
        parse(text, "ws_1", NOW)
    assert [(e.line, e.field) for e in refused.value.errors] == [(5, "day"), (6, "output_tokens")]
