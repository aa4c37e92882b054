"""The ClickHouse client factory: rollup is the one service that opens ClickHouse."""

from __future__ import annotations

from typing import Any

import clickhouse_connect
from clickhouse_connect.driver import options as clickhouse_options
from clickhouse_connect.driver.client import Client


def clickhouse_client(url: str, database: str = "default", **settings: Any) -> Client:
    """A clickhouse-connect client for `chdb:///path` (embedded engine) or `http(s)://host:port` (a server)."""
    # clickhouse-connect imports pandas (when installed, and chDB installs it) lazily inside the first insert,
    # to see whether the data is a DataFrame: seconds of a restarted consumer's first batch. Paid here instead.
    clickhouse_options.pd  # noqa: B018
    if url.startswith("chdb://"):
        return clickhouse_connect.get_client(dsn=url, settings=settings)
    return clickhouse_connect.get_client(dsn=url, database=database, settings=settings)
