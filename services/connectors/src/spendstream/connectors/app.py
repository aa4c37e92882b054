"""connectors' wiring table.

| in                                                  | out / owns                                     |
|-----------------------------------------------------|------------------------------------------------|
| /v1/connectors (settings.write; reads usage.read)   | connectors.config.v1 (sealed admin keys)       |
| every connector_pull_seconds: the providers' APIs  | connectors.usage.v1, connectors.state.v1       |
|   (GET only)                                        | rollup.alerts.v1 (a refused key, once)         |
| ingest.datakeys.v1, ingest.apikeys.v1 (replayed tables) |                                            |
| retention.commands.v1 (group spendstream-connectors-erasure) | tombstones on connectors.config/state.v1 |
"""

from __future__ import annotations

import redis.asyncio as aioredis

from spendstream.common.http_auth import service_access
from spendstream.common.kafka import make_broker
from spendstream.common.service import Service
from spendstream.common.tenants import KeyDirectory, KeyRing
from spendstream.connectors.api import build_router
from spendstream.connectors.erasure import serve_workspace_erasure
from spendstream.connectors.providers import ProviderReader
from spendstream.connectors.providers.anthropic import AnthropicReader
from spendstream.connectors.providers.openai import OpenAIReader
from spendstream.connectors.puller import Puller
from spendstream.connectors.registry import Registry
from spendstream.connectors.settings import ConnectorsSettings


def create_service(settings: ConnectorsSettings) -> Service:
    broker = make_broker(settings, "connectors")
    keys = KeyDirectory(settings)
    # Members' sessions only: connectors keeps nothing else in Redis.
    redis = aioredis.Redis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    access, members = service_access(settings, "connectors", keys, broker, redis)
    keyring = KeyRing(settings)
    registry = Registry(settings, broker, keyring)
    readers: dict[str, ProviderReader] = {"openai": OpenAIReader(), "anthropic": AnthropicReader()}
    serve_workspace_erasure(broker, registry, settings.topic_prefix)
    puller = Puller(settings, readers, registry.publish_day, registry.save_state, registry.alert)

    async def pull_round() -> None:
        await registry.pull_all(puller)

    service = Service("connectors", routers=[build_router(registry, access)])
    # The tables before the broker: a deletion command may arrive as soon as the broker runs.
    service.on_start(keys.table.start, members.start, keyring.table.start, registry.start, broker.start)
    service.every("connectors:pull", settings.connector_pull_seconds, pull_round, immediately=True, wake=registry.wake)
    service.on_stop(registry.stop, broker.stop, keyring.table.stop, members.stop, keys.table.stop, redis.aclose)
    return service
