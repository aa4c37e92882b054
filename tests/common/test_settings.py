"""Base settings: environment variables, the embedded defaults, and loud failures with the variable's name."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from spendstream.alerts.settings import AlertsSettings
from spendstream.common.settings import BaseServiceSettings, ConfigurationError, check, load
from spendstream.ingest.settings import IngestSettings
from spendstream.retention.settings import RetentionSettings
from spendstream.rollup.settings import RollupSettings


def test_settings_come_from_spendstream_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPENDSTREAM_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("SPENDSTREAM_RETENTION_MONTHS", "13")
    settings = BaseServiceSettings()
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.retention_months == 13


def test_a_retention_beyond_thirteen_months_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPENDSTREAM_RETENTION_MONTHS", "14")
    with pytest.raises(ConfigurationError, match="SPENDSTREAM_RETENTION_MONTHS: "):
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


BAD_VALUES = [
    ("SPENDSTREAM_REDIS_URL", "notaurl"),
    ("SPENDSTREAM_REDIS_URL", "http://redis:6379/0"),
    ("SPENDSTREAM_REDIS_URL", "redis://redis:port/0"),
    ("SPENDSTREAM_REDIS_URL", "redis://redis:6379/zero"),
    ("SPENDSTREAM_CLICKHOUSE_URL", "http//clickhouse:8123"),
    ("SPENDSTREAM_CLICKHOUSE_URL", "http://:8123"),
    ("SPENDSTREAM_CLICKHOUSE_URL", "ftp://clickhouse"),
    ("SPENDSTREAM_CLICKHOUSE_URL", "chdb://"),
    ("SPENDSTREAM_LOG_LEVEL", "LOUD"),
    ("SPENDSTREAM_KAFKA_BOOTSTRAP_SERVERS", "kafka:notaport"),
    ("SPENDSTREAM_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092,,kafka2:9092"),
    ("SPENDSTREAM_KAFKA_BOOTSTRAP_SERVERS", "kafka:99999"),
    ("SPENDSTREAM_HTTP_PORT", "eighty"),
    ("SPENDSTREAM_HTTP_HOST", ""),
    ("SPENDSTREAM_KEK_ID", ""),
    ("SPENDSTREAM_AUTH_BLOCK_SECONDS", "0"),
    ("SPENDSTREAM_TRUSTED_PROXIES", '["ingress-nginx"]'),
    ("SPENDSTREAM_TRUSTED_PROXIES", '["10.0.0.0/33"]'),
    ("SPENDSTREAM_TRUSTED_PROXIES", "10.0.0.2,proxy"),
    ("SPENDSTREAM_TRUSTED_PROXIES", '["10.0.0.2"'),
]


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES, ids=[f"{v}={x}" for v, x in BAD_VALUES])
def test_a_bad_value_fails_at_load_naming_the_environment_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as refused:
        BaseServiceSettings()
    assert str(refused.value).count("SPENDSTREAM_") == 1 and f"{variable}:" in str(refused.value)
    field = variable.removeprefix("SPENDSTREAM_").lower()
    assert f"{field}\n" not in str(refused.value)  # pydantic's own layout names the field on a line of its own


def test_every_bad_value_is_named_at_once_and_a_bad_kek_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPENDSTREAM_REDIS_URL", "notaurl")
    monkeypatch.setenv("SPENDSTREAM_LOG_LEVEL", "LOUD")
    monkeypatch.setenv("SPENDSTREAM_KEK", "not-base64-secret-value")
    with pytest.raises(ConfigurationError) as refused:
        BaseServiceSettings()
    message = str(refused.value)
    for variable in ("SPENDSTREAM_REDIS_URL", "SPENDSTREAM_LOG_LEVEL", "SPENDSTREAM_KEK"):
        assert f"{variable}:" in message
    assert "not-base64-secret-value" not in message


def test_every_service_names_its_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPENDSTREAM_ROLLUP_URL", "rollup:8082")
    with pytest.raises(ConfigurationError, match="SPENDSTREAM_ROLLUP_URL:"):
        AlertsSettings()
    monkeypatch.setenv("SPENDSTREAM_DEFAULT_PLAN", "gold")
    with pytest.raises(ConfigurationError, match="SPENDSTREAM_DEFAULT_PLAN:"):
        IngestSettings()
    monkeypatch.setenv("SPENDSTREAM_CLICKHOUSE_DATABASE", "no-dashes")
    with pytest.raises(ConfigurationError, match="SPENDSTREAM_CLICKHOUSE_DATABASE:"):
        RollupSettings()
    monkeypatch.setenv("SPENDSTREAM_MAX_ATTEMPTS", "0")
    with pytest.raises(ConfigurationError, match="SPENDSTREAM_MAX_ATTEMPTS:"):
        RetentionSettings()


GOOD_VALUES = [
    ("SPENDSTREAM_REDIS_URL", "redis://redis:6379/0"),
    ("SPENDSTREAM_REDIS_URL", "rediss://user:secret@redis.example:6380/2"),
    ("SPENDSTREAM_REDIS_URL", "redis://redis"),
    ("SPENDSTREAM_REDIS_URL", "unix:///run/redis.sock?db=1"),
    ("SPENDSTREAM_CLICKHOUSE_URL", ""),
    ("SPENDSTREAM_CLICKHOUSE_URL", "chdb:///var/lib/spendstream/clickhouse"),
    ("SPENDSTREAM_CLICKHOUSE_URL", "http://clickhouse:8123"),
    ("SPENDSTREAM_CLICKHOUSE_URL", "https://user:pw@ch.example"),
    ("SPENDSTREAM_KAFKA_BOOTSTRAP_SERVERS", "kafka-0:9092, kafka-1:9092,[::1]:9093,kafka-2"),
    ("SPENDSTREAM_LOG_LEVEL", "debug"),
    ("SPENDSTREAM_TRUSTED_PROXIES", '["10.0.0.2", "10.244.0.0/16", "fd00::/8"]'),
    ("SPENDSTREAM_TRUSTED_PROXIES", "10.0.0.2, 10.244.0.0/16"),
]


@pytest.mark.parametrize(("variable", "value"), GOOD_VALUES, ids=[f"{v}={x}" for v, x in GOOD_VALUES])
def test_the_documented_forms_are_accepted(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    BaseServiceSettings()


def test_trusted_proxies_are_read_as_a_list_or_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPENDSTREAM_TRUSTED_PROXIES", "10.0.0.2, 10.244.0.0/16")
    assert BaseServiceSettings().trusted_proxies == ("10.0.0.2", "10.244.0.0/16")
    monkeypatch.setenv("SPENDSTREAM_TRUSTED_PROXIES", '["10.0.0.2"]')
    assert BaseServiceSettings().trusted_proxies == ("10.0.0.2",)


def test_the_log_level_is_taken_in_any_case() -> None:
    assert BaseServiceSettings(log_level="warning").log_level == "WARNING"


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


def test_the_kek_id_derives_from_the_kek_so_two_keks_never_share_one(tmp_path: Path) -> None:
    one, other = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    first = BaseServiceSettings(kek=one).kek_identity()
    assert first == BaseServiceSettings(kek=one).kek_identity()
    assert first != BaseServiceSettings(kek=other).kek_identity()
    assert first.startswith("kek-") and one not in first
    # Two generated KEKs (two data directories) get two ids.
    generated = {BaseServiceSettings(data_dir=tmp_path / d).kek_identity() for d in ("a", "b")}
    assert len(generated) == 2


def test_an_explicitly_configured_kek_id_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPENDSTREAM_KEK_ID", "local-1")
    assert BaseServiceSettings(kek=base64.b64encode(os.urandom(32)).decode()).kek_identity() == "local-1"


def test_the_data_dir_does_not_depend_on_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPENDSTREAM_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    seen = set()
    for where in ("one", "two"):
        (tmp_path / where).mkdir()
        monkeypatch.chdir(tmp_path / where)
        seen.add(BaseServiceSettings().data_dir)
    assert seen == {tmp_path / "xdg" / "spendstream"}
    # A relative SPENDSTREAM_DATA_DIR is resolved once, at load: a later change of directory moves nothing.
    monkeypatch.setenv("SPENDSTREAM_DATA_DIR", "rel")
    settings = BaseServiceSettings()
    monkeypatch.chdir(tmp_path / "one")
    assert settings.data_dir == tmp_path / "two" / "rel" and settings.kek_path() == tmp_path / "two" / "rel" / "kek"
