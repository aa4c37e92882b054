"""Settings every service shares. Each service subclasses `BaseServiceSettings` and adds only its own fields.

Every value is validated when the settings are loaded; a bad one raises `ConfigurationError`, whose message names
each offending environment variable (never the value: it may be a secret) on a line of its own. `check` also
validates the KEK, writing nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "SPENDSTREAM_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_BROKER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:[0-9]{1,5})?$")


class ConfigurationError(ValueError):
    """A configuration that cannot work; the message names each offending `SPENDSTREAM_*` variable, never its
    value."""


def describe(error: ValidationError) -> str:
    """One line per error, `SPENDSTREAM_<FIELD>: <what is wrong>`, without the offending value."""
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in item["loc"])
        name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}: {message}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _port_ok(port: str | None) -> bool:
    return port is None or (port.isdigit() and 1 <= int(port) <= 65535)


def _url_port_ok(url: str) -> bool:
    try:
        port = urlsplit(url).port
    except ValueError:
        return False
    return port is None or port > 0


def is_http_url(value: str) -> bool:
    """http(s)://host[:port][/path], with a host and a valid port."""
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and _url_port_ok(value)


class BaseServiceSettings(BaseSettings):
    """Read from `SPENDSTREAM_*` environment variables; a bad value fails at load naming its variable."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    def __init__(self, *args: Any, **values: Any) -> None:
        try:
            super().__init__(*args, **values)
        except ValidationError as exc:
            # pydantic names the field and echoes the value; the operator set a variable, and it may be secret.
            raise ConfigurationError(describe(exc)) from None

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    clickhouse_url: str = ""  # empty: chdb:// under data_dir (the embedded default)
    # Absolute once loaded: every command of one installation finds the same KEK and chDB wherever it is run from.
    data_dir: Path = Field(default_factory=lambda: default_data_dir())
    # Prepended to every topic and consumer group name: isolates tests and side-by-side installs.
    topic_prefix: str = ""
    # Replicas per topic at provisioning: 1 for the single local broker, 3 on a production cluster.
    topic_replication_factor: int = Field(default=1, ge=1, le=7)
    # The longest a tombstoned or superseded value of a compacted topic stays readable (crypto-shredding is true
    # only once the data key's records are gone); compacted topics are configured from it (`topics.py`).
    compaction_bound_seconds: float = Field(default=3600.0, gt=0, le=3600)
    # Prepended to every Redis key this installation writes, for the same reason.
    redis_prefix: str = "ss:"
    # Base64 of 32 bytes. Wraps every workspace data key; never logged. Empty: read or create data_dir/kek.
    kek: SecretStr = SecretStr("")
    # Unset: derived from the KEK's fingerprint (`kek_identity`), so two different KEKs never share an id.
    kek_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    # Shared secret of service-to-service HTTP routes (`/internal/...`); empty disables them. Never logged.
    internal_token: SecretStr = SecretStr("")
    http_host: str = Field(default="127.0.0.1", pattern=r"^[A-Za-z0-9_.:-]+$")
    http_port: int = Field(default=8080, ge=1, le=65535)
    log_level: str = "INFO"
    retention_months: int = Field(default=12, ge=1, le=13)
    # The brake on guessing keys (`auth_brake.py`): failed authentications tolerated per client address and per
    # key prefix within the window, before 429 with Retry-After for `auth_block_seconds`. Per replica.
    auth_failures_per_address: int = Field(default=50, ge=1)
    auth_failures_per_key_prefix: int = Field(default=50, ge=1)
    auth_failure_window_seconds: float = Field(default=60.0, gt=0)
    auth_block_seconds: float = Field(default=60.0, gt=0)
    # The reverse proxies (addresses or CIDR networks, e.g. the ingress controller's pod network) whose
    # X-Forwarded-For and X-Forwarded-Proto are believed (`service.serve`); from any other peer they are ignored.
    # Every per-client decision (the key brake, the sign-in lockout, the audit's client hash, the Secure cookie)
    # then sees the client rather than the proxy. Comma-separated, or a JSON list.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    # Members' sessions (`sessions.py`): ended after this long without a request, and this long after sign-in.
    session_idle_seconds: float = Field(default=1800.0, gt=0)
    session_absolute_seconds: float = Field(default=12 * 3600.0, gt=0)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_chars(cls, value: str) -> str:
        if value and not all(c.isalnum() or c in "._-" for c in value):
            raise ValueError("may hold only letters, digits, '.', '_' and '-'")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return tuple(part.strip() for part in text.split(",") if part.strip())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for proxy in value:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"{proxy!r} is neither an IP address nor a CIDR network (e.g. 10.0.0.0/8)") from None
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _brokers(cls, value: str) -> str:
        for broker in value.split(","):
            match = _BROKER.match(broker.strip())
            if match is None or not _port_ok(match.group(2) and match.group(2)[1:]):
                raise ValueError("must be a comma-separated list of host:port (e.g. kafka-0:9092,kafka-1:9092)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parts = urlsplit(value)
        valid = (
            parts.scheme in ("redis", "rediss")
            and bool(parts.hostname)
            and _url_port_ok(value)
            and re.fullmatch(r"/?([0-9]+)?", parts.path) is not None
        ) or (parts.scheme == "unix" and bool(parts.path))
        if not valid:
            raise ValueError("must be redis://host:port/db, rediss://host:port/db or unix:///path/to/socket")
        return value

    @field_validator("clickhouse_url")
    @classmethod
    def _clickhouse_url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        valid = (parts.scheme == "chdb" and bool(parts.netloc + parts.path)) or is_http_url(value)
        if not valid:
            raise ValueError(
                "must be empty (embedded chDB under the data directory), chdb:///path or http(s)://host:port"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> object:
        if isinstance(value, str):
            if value.upper() not in LOG_LEVELS:
                raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
            return value.upper()
        return value

    @field_validator("kek")
    @classmethod
    def _kek_form(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw:
            try:
                key = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("is not valid base64") from None
            if len(key) != 32:
                raise ValueError("must decode to 32 bytes (AES-256)")
        return value

    def resolved_clickhouse_url(self) -> str:
        return self.clickhouse_url or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    def kek_path(self) -> Path:
        """Where the KEK is read from (and created at first start) when SPENDSTREAM_KEK is empty."""
        return self.data_dir / "kek"

    def kek_source(self) -> str:
        """Where the KEK comes from, for messages: the variable or the file (never the key)."""
        return "SPENDSTREAM_KEK" if self.kek.get_secret_value() else str(self.kek_path())

    def kek_exists(self) -> bool:
        return bool(self.kek.get_secret_value()) or self.kek_path().exists()

    def kek_identity(self) -> str:
        """The id new key sets record as their KEK's: SPENDSTREAM_KEK_ID, else derived from the KEK itself."""
        return self.kek_id or fingerprint_id(self.kek_bytes())

    def kek_bytes(self) -> bytes:
        """The key-encryption key: from the secret, else from data_dir/kek (created once, mode 0600)."""
        raw = self.kek.get_secret_value()
        if not raw:
            path = self.kek_path()
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


def default_data_dir() -> Path:
    """$XDG_DATA_HOME/spendstream (~/.local/share/spendstream): never relative to the working directory."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "spendstream"


def fingerprint_id(kek: bytes) -> str:
    """`kek-` and 96 bits of the KEK's SHA-256 fingerprint (domain-separated): the same key always gets the same
    id, two keys never the same one, and the id tells nothing usable about the key."""
    return "kek-" + hashlib.sha256(b"spendstream.kek-id|" + kek).hexdigest()[:24]


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
    return settings_type(**overrides)


def check(settings_type: type[S], **overrides: Any) -> S:
    """`load`, and the KEK validated as well; nothing is written anywhere."""
    settings = load(settings_type, **overrides)
    settings.check_kek()
    return settings
