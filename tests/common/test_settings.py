"""Base settings: environment variables, the embedded defaults, and loud failures with the variable's name."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from spendstream.common.settings import BaseServiceSettings, ConfigurationError, check, load


def test_settings_come_from_spendstream_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPENDSTREAM_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("SPENDSTREAM_RETENTION_MONTHS", "13")
    settings = BaseServiceSettings()
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.retention_months == 13


def test_a_retention_beyond_thirteen_months_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPENDSTREAM_RETENTION_MONTHS", "14")
    with pytest.raises(ValidationError, match="retention_months"):
        BaseServiceSettings()


def test_the_embedded_default_is_chdb_under_the_data_dir(tmp_path: Path) -> None:
    settings = BaseServiceSettings(data_dir=tmp_path)
    assert settings.resolved_clickhouse_url() == f"chdb://{(tmp_path / 'clickhouse').resolve()}"
    assert BaseServiceSettings(clickhouse_url="http://ch:8123").resolved_clickhouse_url() == "http://ch:8123"


def test_without_a_configured_kek_one_is_generated_once_with_owner_only_permissions(tmp_path: Path) -> None:
    settings = BaseServiceSettings(data_dir=tmp_path)
    first = settings.kek_bytes()
    assert len(first) == 32
    assert settings.kek_bytes() == first
    assert stat.S_IMODE(os.stat(tmp_path / "kek").st_mode) == 0o600


def test_a_kek_of_the_wrong_size_is_refused() -> None:
    short = base64.b64encode(os.urandom(16)).decode()
    with pytest.raises(ValueError, match="32 bytes"):
        BaseServiceSettings(kek=short).kek_bytes()


def test_the_kek_never_appears_in_the_settings_repr() -> None:
    kek = base64.b64encode(os.urandom(32)).decode()
    settings = BaseServiceSettings(kek=kek)
    assert kek not in repr(settings) and kek not in str(settings.model_dump())


def test_check_validates_the_kek_and_writes_nothing(tmp_path: Path) -> None:
    check(BaseServiceSettings, data_dir=tmp_path / "data")
    assert not (tmp_path / "data").exists()
    (tmp_path / "kek").write_text("not base64!")
    with pytest.raises(ConfigurationError, match="SPENDSTREAM_KEK"):
        check(BaseServiceSettings, data_dir=tmp_path)


def test_load_names_every_invalid_variable_at_once_without_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPENDSTREAM_RETENTION_MONTHS", "99")
    monkeypatch.setenv("SPENDSTREAM_TOPIC_PREFIX", "bad prefix!")
    with pytest.raises(ConfigurationError) as raised:
        load(BaseServiceSettings)
    message = str(raised.value)
    assert "SPENDSTREAM_RETENTION_MONTHS" in message and "SPENDSTREAM_TOPIC_PREFIX" in message
    assert "bad prefix!" not in message
