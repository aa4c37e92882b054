"""Settings every service shares. Each service subclasses `BaseServiceSettings` and adds only its own fields.

`load` reads them and names every invalid variable at once; `check` also validates the KEK, writing nothing.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class BaseServiceSettings(BaseSettings):
    """Read from `SPENDSTREAM_*` environment variables; a bad value fails at start with its name."""

    model_config = SettingsConfigDict(env_prefix="SPENDSTREAM_", extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    clickhouse_url: str = ""  # empty: chdb:// under data_dir (the embedded default)
    data_dir: Path = Path(".data")
    # Prepended to every topic and consumer group name: isolates tests and side-by-side installs.
    topic_prefix: str = ""
    # Replicas per topic at provisioning: 1 for the single local broker, 3 on a production cluster.
    topic_replication_factor: int = Field(default=1, ge=1, le=7)
    # Prepended to every Redis key this installation writes, for the same reason.
    redis_prefix: str = "ss:"
    # Base64 of 32 bytes. Wraps every workspace data key; never logged. Empty: read or create data_dir/kek.
    kek: SecretStr = SecretStr("")
    kek_id: str = "local-1"
    # Shared secret of service-to-service HTTP routes (`/internal/...`); empty disables them. Never logged.
    internal_token: SecretStr = SecretStr("")
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=1, le=65535)
    log_level: str = "INFO"
    retention_months: int = Field(default=12, ge=1, le=13)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_chars(cls, value: str) -> str:
        if value and not all(c.isalnum() or c in "._-" for c in value):
            raise ValueError("topic_prefix may hold only letters, digits, '.', '_' and '-'")
        return value

    def resolved_clickhouse_url(self) -> str:
        return self.clickhouse_url or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    def kek_bytes(self) -> bytes:
        """The key-encryption key: from the secret, else from data_dir/kek (created once, mode 0600)."""
        raw = self.kek.get_secret_value()
        if not raw:
            path = self.data_dir / "kek"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(base64.b64encode(secrets.token_bytes(32)).decode())
            raw = path.read_text().strip()
        return _decode_kek(raw)

    def check_kek(self) -> None:
        """Raise ConfigurationError if the KEK is unusable; writes nothing (a missing data_dir/kek is created at
        start, so it is no error)."""
        raw = self.kek.get_secret_value()
        if not raw:
            path = self.data_dir / "kek"
            if not path.exists():
                return
            try:
                raw = path.read_text().strip()
            except OSError as exc:
                raise ConfigurationError(f"{path} cannot be read ({type(exc).__name__})") from None
        _decode_kek(raw)


class ConfigurationError(ValueError):
    """A configuration that cannot work; the message names the variables, never their values."""


def _decode_kek(raw: str) -> bytes:
    try:
        key = base64.b64decode(raw, validate=True)
    except ValueError:
        raise ConfigurationError("SPENDSTREAM_KEK is not valid base64") from None
    if len(key) != 32:
        raise ConfigurationError("SPENDSTREAM_KEK must decode to 32 bytes (AES-256)")
    return key


S = TypeVar("S", bound=BaseServiceSettings)


def load(settings_type: type[S], **overrides: Any) -> S:
    """Settings from the environment; every invalid variable is named in one ConfigurationError."""
    try:
        return settings_type(**overrides)
    except ValidationError as exc:
        # Only names and pydantic's message: its full text would quote the offending input.
        problems = [f"{_variable(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigurationError("; ".join(problems)) from None


def _variable(loc: tuple[int | str, ...]) -> str:
    return f"SPENDSTREAM_{str(loc[0]).upper()}" if loc else "SPENDSTREAM_*"


def check(settings_type: type[S], **overrides: Any) -> S:
    """`load`, and the KEK validated as well; nothing is written anywhere."""
    settings = load(settings_type, **overrides)
    settings.check_kek()
    return settings
