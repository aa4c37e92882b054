"""connectors' configuration: the shared base plus the providers' base URLs and the pull schedule."""

from __future__ import annotations

from pydantic import Field, field_validator

from spendstream.common.settings import BaseServiceSettings, is_http_url


class ConnectorsSettings(BaseServiceSettings):
    http_port: int = Field(default=8085, ge=1, le=65535)
    # Settings so that tests (and a proxy) can stand in for the providers.
    connector_openai_base_url: str = "https://api.openai.com"
    connector_anthropic_base_url: str = "https://api.anthropic.com"
    # Days read on a connector's creation, and the trailing days re-read on every round: a provider corrects
    # past days late, and a re-read day replaces its earlier figures.
    connector_backfill_days: int = Field(default=30, ge=1, le=365)
    connector_trailing_days: int = Field(default=3, ge=1, le=31)
    # Days per request window (OpenAI returns at most 31 daily buckets a page); the cursor advances per window.
    connector_window_days: int = Field(default=7, ge=1, le=31)
    connector_pull_seconds: float = Field(default=3600.0, gt=0)
    # Retries of one request on 429 / 5xx / a network error before the round ends (the cursor stays put).
    connector_max_attempts: int = Field(default=6, ge=1)
    connector_backoff_seconds: float = Field(default=1.0, gt=0)
    connector_max_wait_seconds: float = Field(default=120.0, gt=0)

    @field_validator("connector_openai_base_url", "connector_anthropic_base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not is_http_url(value):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")
