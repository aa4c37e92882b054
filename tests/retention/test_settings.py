"""retention's `erasure_owners`: the owners an installation runs, every one by default, named and validated."""

from __future__ import annotations

import pytest

from spendstream.common.erasure import OWNERS
from spendstream.common.settings import ConfigurationError
from spendstream.retention.settings import RetentionSettings


def test_every_owner_is_waited_for_by_default() -> None:
    assert RetentionSettings().owners() == OWNERS
    assert "connectors" in OWNERS


def test_a_listed_subset_is_kept_in_the_receipts_order() -> None:
    settings = RetentionSettings(erasure_owners="alerts, ingest,rollup")
    assert settings.owners() == ("ingest", "rollup", "alerts")


@pytest.mark.parametrize("value", ["", "ingest,,rollup", "ingest,billing", "ingest,ingest"])
def test_an_unknown_empty_or_repeated_owner_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigurationError, match="SPENDSTREAM_ERASURE_OWNERS"):
        RetentionSettings(erasure_owners=value)
