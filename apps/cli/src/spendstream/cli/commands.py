"""What the CLI does, one function per command; the services are composed here and nowhere else."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Callable
from typing import Any

from spendstream.alerts.app import create_service as create_alerts
from spendstream.alerts.settings import AlertsSettings
from spendstream.cli.running import already_running
from spendstream.common import logs
from spendstream.common.kafka import make_broker, provision_topics
from spendstream.common.kek_check import kek_problems, verify_kek
from spendstream.common.service import Service, build_http_app, entrypoint, serve
from spendstream.common.settings import BaseServiceSettings, ConfigurationError, load
from spendstream.common.settings import check as check_settings
from spendstream.common.topics import ALL_TOPICS, topic_name
from spendstream.connectors.app import create_service as create_connectors
from spendstream.connectors.settings import ConnectorsSettings
from spendstream.console.__main__ import main as console_main
from spendstream.console.app import create_service as create_console
from spendstream.console.settings import ConsoleSettings
from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.settings import IngestSettings
from spendstream.ingest.workspaces import ControlPlane
from spendstream.people.app import create_service as create_people
from spendstream.people.settings import PeopleSettings
from spendstream.retention.app import create_service as create_retention
from spendstream.retention.settings import RetentionSettings
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.settings import RollupSettings

SERVICES = ("ingest", "rollup", "alerts", "retention", "connectors", "people", "console")


async def create_topics() -> list[str]:
    return await provision_topics(BaseServiceSettings())


def list_topics() -> list[dict[str, Any]]:
    prefix = BaseServiceSettings().topic_prefix
    return [
        {
            "name": topic_name(t, prefix),
            "producer": t.producer,
            "consumers": list(t.consumers),
            "record": getattr(t.record, "model", bytes).__name__,
            "key": t.key,
            "partitions": t.partitions,
            "configs": t.configs(),
        }
        for t in ALL_TOPICS
    ]


async def create_workspace(name: str, plan: str) -> dict[str, Any]:
    settings = IngestSettings()
    # A KEK other than the server's (or a new one, created here) would wrap a key the server cannot unwrap.
    if problems := await kek_problems(settings):
        raise ConfigurationError("\n".join(problems))
    broker = make_broker(settings, "cli")
    await broker.connect()
    try:
        workspace, keys = await ControlPlane(settings, broker).create_workspace(name, plan)
    finally:
        await broker.stop()
    return {
        "workspace_id": workspace.workspace_id,
        "name": workspace.name,
        "plan": workspace.plan,
        "keys": {k.scope: k.key for k in keys},
        "note": "keys are shown once and stored only as SHA-256 hashes",
    }


SETTINGS: dict[str, type[BaseServiceSettings]] = {
    "ingest": IngestSettings,
    "rollup": RollupSettings,
    "alerts": AlertsSettings,
    "retention": RetentionSettings,
    "connectors": ConnectorsSettings,
    "people": PeopleSettings,
    "console": ConsoleSettings,
}


def _monolith(settings: BaseServiceSettings) -> list[Service]:
    """The six services in one process. alerts reconciles against rollup on the same port; unless an internal
    token is configured, a random one joins them (nothing outside the process needs it)."""
    token = settings.internal_token.get_secret_value() or secrets.token_urlsafe(32)
    return [
        create_ingest(load(IngestSettings)),
        create_rollup(load(RollupSettings, internal_token=token)),
        create_alerts(load(AlertsSettings, internal_token=token, rollup_url=f"http://127.0.0.1:{settings.http_port}")),
        create_retention(load(RetentionSettings)),
        create_connectors(load(ConnectorsSettings)),
        # Links people mails or prints point at the monolith's own port.
        create_people(load(PeopleSettings, http_port=settings.http_port)),
        # The console's routes are `/`, the page paths and `/assets/`: beside the services' /v1/..., no clash.
        create_console(load(ConsoleSettings)),
    ]


def up(check: bool = False) -> int:
    """Monolithic mode: the six services, one process, one HTTP port (SPENDSTREAM_HTTP_PORT, 8080).

    With `check`, validate every service's configuration and the KEK against the data keys, and write nothing."""
    settings = check_settings(BaseServiceSettings)
    for settings_type in SETTINGS.values():
        check_settings(settings_type)
    verify_kek(settings)
    if check:
        print("configuration is valid")
        return 0
    if (busy := already_running(settings)) is not None:
        print(f"spendstream: {busy}", file=sys.stderr)
        return 1
    logs.configure(settings.log_level)
    asyncio.run(provision_topics(settings))  # the embedded default provisions itself
    serve(
        build_http_app(_monolith(settings)),
        settings.http_host,
        settings.http_port,
        trusted_proxies=settings.trusted_proxies,
    )
    return 0


def run(name: str, check: bool = False) -> int:
    """Microservices mode: one service on its own port with its own consumer groups (as `python -m`)."""
    factories: dict[str, Callable[[Any], Service]] = {
        "ingest": create_ingest,
        "rollup": create_rollup,
        "alerts": create_alerts,
        "retention": create_retention,
        "connectors": create_connectors,
        "people": create_people,
    }
    if not check:
        settings = check_settings(SETTINGS[name])
        if (busy := already_running(settings, embedded_clickhouse=name == "rollup")) is not None:
            print(f"spendstream: {busy}", file=sys.stderr)
            return 1
    if name == "console":  # no KEK and no Kafka to check: its own entry point (spendstream.console.__main__)
        return console_main(["--check"] if check else [])
    return entrypoint(name, SETTINGS[name], factories[name], ["--check"] if check else [])
