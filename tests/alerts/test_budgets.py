"""Budget records: sealed webhook secrets bound to their budget, and changes that keep or replace them."""

from __future__ import annotations

import os
from decimal import Decimal

import pytest
from cryptography.exceptions import InvalidTag

from spendstream.alerts.budgets import BudgetIn, BudgetPatch, SecretBox, WebhookIn, public_view
from tests.alerts.helpers import budget


def test_a_sealed_secret_opens_only_for_its_own_workspace_budget_and_webhook() -> None:
    box = SecretBox(os.urandom(32), "k1")
    hook = box.seal("ws1", "bud_a", "wh_1", "https://example.com/h", "s3cret-s3cret-s3cret")
    own = budget("ws1", budget_id="bud_a", webhooks=(hook,))
    assert box.open(own, hook) == b"s3cret-s3cret-s3cret"
    assert b"s3cret" not in hook.model_dump_json().encode()
    with pytest.raises(InvalidTag):
        box.open(budget("ws1", budget_id="bud_b", webhooks=(hook,)), hook)
    with pytest.raises(InvalidTag):
        box.open(budget("ws2", budget_id="bud_a", webhooks=(hook,)), hook)


def test_public_view_never_shows_a_secret_unless_just_set() -> None:
    box = SecretBox(os.urandom(32), "k1")
    hook = box.seal("ws1", "bud_a", "wh_1", "https://example.com/h", "s3cret-s3cret-s3cret")
    view = public_view(budget(webhooks=(hook,)))
    assert view.webhooks[0].secret is None and "s3cret" not in view.model_dump_json()


def test_defaults_and_threshold_normalisation() -> None:
    body = BudgetIn(name="b", amount_usd=Decimal(10))
    assert (body.thresholds, body.forecast, body.spike_multiple) == ([75, 90, 100], True, Decimal(3))
    assert BudgetIn(name="b", amount_usd=Decimal(10), thresholds=[100, 50, 50]).thresholds == [50, 100]
    assert BudgetPatch(thresholds=[90, 80]).thresholds == [80, 90]
    assert WebhookIn(url="https://example.com/x").secret is None


def test_a_hard_budget_fails_closed_by_default_and_is_capped_where_lua_compares_exactly() -> None:
    hard = BudgetIn(name="cap", amount_usd=Decimal("1000000"), hard=True)
    assert hard.on_redis_unavailable == "deny"
    assert BudgetIn(name="soft", amount_usd=Decimal("5000000")).hard is False
    with pytest.raises(ValueError, match="at most 1000000"):
        BudgetIn(name="cap", amount_usd=Decimal("1000000.000000001"), hard=True)
    with pytest.raises(ValueError):
        BudgetIn.model_validate({"name": "cap", "amount_usd": "1", "hard": "true"})  # strict: a string is no boolean
