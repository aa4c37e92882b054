"""docker-compose.yml: valid against the Compose specification schema (a copy in deploy/schemas, so no network
and no shared/ directory are needed), and wired the way the services expect."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
import yaml

from spendstream.common.settings import BaseServiceSettings
from tests.deploy.deployables import (
    ROOT,
    SCHEMAS,
    SERVICES,
    Deployable,
    env_names,
    interpolate_compose,
    readme_variables,
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_copy_catches_a_misspelt_key(compose: dict[str, Any]) -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    broken = {
        **compose,
        "services": {**compose["services"], "redis": {**compose["services"]["redis"], "helthcheck": {}}},
    }
    assert not jsonschema.Draft7Validator(schema).is_valid(broken)


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_each_service_is_built_from_its_dockerfile_and_waits_for_what_it_needs(
    compose: dict[str, Any], service: Deployable
) -> None:
    spec = compose["services"][service.name]
    assert spec["build"] == {
        "context": ".",
        "dockerfile": "Dockerfile",
        "args": {"SERVICE": service.name, "PORT": str(service.port)},
    }
    assert (ROOT / spec["build"]["dockerfile"]).is_file()
    needs = {"kafka": "service_healthy", "topics": "service_completed_successfully"}
    needs.update(
        {"rollup": {"clickhouse": "service_healthy"}, "retention": {}, "connectors": {}}.get(
            service.name, {"redis": "service_healthy"}
        )
    )
    if service.name == "console":
        needs = {}  # static pages: it reads no topic, no Redis, no ClickHouse
    assert {dep: cond["condition"] for dep, cond in spec.get("depends_on", {}).items()} == needs
    assert f"http://127.0.0.1:{service.port}/readyz" in " ".join(spec["healthcheck"]["test"])
    assert spec["ports"] == [f"{service.port}:{service.port}"]
    assert spec["environment"]["SPENDSTREAM_HTTP_PORT"] == str(service.port)


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_services_use_only_configuration_variables_their_settings_read(
    compose: dict[str, Any], service: Deployable
) -> None:
    names = set(compose["services"][service.name]["environment"])
    assert names <= env_names(service.settings), names - env_names(service.settings)
    shared = names & env_names(BaseServiceSettings)
    assert shared <= readme_variables(), shared - readme_variables()


@pytest.mark.parametrize("service", [s for s in SERVICES if s.name != "console"], ids=lambda s: s.name)
def test_the_kek_is_a_secret_file_never_an_environment_value(compose: dict[str, Any], service: Deployable) -> None:
    spec = compose["services"][service.name]
    assert "SPENDSTREAM_KEK" not in spec["environment"]
    data_dir = spec["environment"]["SPENDSTREAM_DATA_DIR"]
    # BaseServiceSettings.kek_bytes() reads data_dir/kek when SPENDSTREAM_KEK is empty.
    assert spec["secrets"] == [{"source": "kek", "target": f"{data_dir}/kek"}]
    assert compose["secrets"]["kek"] == {"file": "${SPENDSTREAM_KEK_FILE:-./.secrets/kek}"}


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_service_containers_are_hardened_and_drain_before_sigkill(compose: dict[str, Any], service: Deployable) -> None:
    spec = compose["services"][service.name]
    assert spec["read_only"] is True and spec["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in spec["security_opt"]
    assert spec["stop_signal"] == "SIGTERM"
    # uvicorn drains HTTP for 30 s; the consumer's graceful stop also has 30 s; SIGKILL must come later.
    assert int(spec["stop_grace_period"].removesuffix("s")) > 30


def test_rollup_writes_to_the_clickhouse_server_not_chdb(compose: dict[str, Any]) -> None:
    url = compose["services"]["rollup"]["environment"]["SPENDSTREAM_CLICKHOUSE_URL"]
    assert re.fullmatch(r"http://spendstream:\$\{CLICKHOUSE_PASSWORD:\?[^}]+\}@clickhouse:8123", url)
    assert compose["services"]["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")


def test_alerts_reconciles_against_rollup_with_the_shared_internal_token(compose: dict[str, Any]) -> None:
    alerts, rollup = (compose["services"][n]["environment"] for n in ("alerts", "rollup"))
    assert alerts["SPENDSTREAM_ROLLUP_URL"] == "http://rollup:8082"
    assert alerts["SPENDSTREAM_INTERNAL_TOKEN"] == rollup["SPENDSTREAM_INTERNAL_TOKEN"]
    assert rollup["SPENDSTREAM_INTERNAL_TOKEN"].startswith("${SPENDSTREAM_INTERNAL_TOKEN:?")


def test_kafka_is_apache_kafka_4_in_kraft_mode_without_topic_auto_creation(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"])
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "INTERNAL://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert compose["x-spendstream-env"]["SPENDSTREAM_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_redis_persists_with_an_append_only_file_on_a_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert redis["volumes"] == ["redis-data:/data"]


def test_topics_are_provisioned_once_by_the_cli_image_before_the_services_start(compose: dict[str, Any]) -> None:
    topics = compose["services"]["topics"]
    assert topics["command"] == ["topics", "create"]
    assert topics["build"] == {
        "context": ".",
        "dockerfile": "Dockerfile",
        "target": "cli",
        "args": {"PACKAGE": "spendstream-cli", "SOURCE": "."},
    }
    assert topics["restart"] == "no"
    assert topics["depends_on"] == {"kafka": {"condition": "service_healthy"}}


def test_every_image_has_a_pinned_tag(compose: dict[str, Any]) -> None:
    for name, spec in compose["services"].items():
        image = spec["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image else ""
        assert tag and tag != "latest", f"{name}: {image}"


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_each_service_accepts_the_configuration_compose_gives_it(
    compose: dict[str, Any], service: Deployable, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = compose["services"][service.name]["environment"]
    env = {name: interpolate_compose(str(value)) for name, value in given.items()}
    for name in env_names(service.settings):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = service.settings()
    assert settings.http_port == service.port and settings.http_host == "0.0.0.0"
    if service.name != "console":  # the console talks to no broker
        assert settings.kafka_bootstrap_servers == "kafka:9092"
