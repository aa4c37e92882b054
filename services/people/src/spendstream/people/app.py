"""people's wiring table.

| in                                   | out / owns                                             |
|--------------------------------------|--------------------------------------------------------|
| /v1/members, /v1/invitations, /v1/me | people.members.v1 (ids and roles); e-mails, names and  |
| /v1/auth/* (sign-in, TOTP, OIDC)     |   credentials in its own Redis keys; sessions (Redis)  |
| every action                         | audit.records.v1                                       |
"""

from __future__ import annotations

from typing import cast

import redis.asyncio as aioredis

from spendstream.common.audit import AuditTrail
from spendstream.common.kafka import Publisher, make_broker
from spendstream.common.records import MemberRecord
from spendstream.common.service import Service
from spendstream.common.sessions import SessionRedis, SessionStore
from spendstream.common.topics import MEMBERS
from spendstream.people.directory import Directory
from spendstream.people.oidc import FlowCookie, OidcClient
from spendstream.people.oidc_api import SignOn, oidc_router
from spendstream.people.settings import PeopleSettings


def create_service(settings: PeopleSettings) -> Service:
    broker = make_broker(settings, "people")
    redis = aioredis.Redis.from_url(settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    # redis-py's asyncio methods are typed as returning Awaitable, the protocol's as coroutines: the same calls.
    sessions = SessionStore(settings, cast(SessionRedis, redis))
    members = Publisher(broker, MEMBERS, settings.topic_prefix)

    async def publish_member(record: MemberRecord) -> None:
        await members.publish(record, record.member_id)

    directory = Directory(
        redis=redis,
        redis_prefix=settings.redis_prefix,
        kek=settings.kek_bytes(),
        publish=publish_member,
        sessions=sessions,
    )
    sign_on = SignOn(
        settings=settings,
        client=OidcClient(settings) if settings.oidc_configured else None,
        cookie=FlowCookie(settings.kek_bytes()),
        directory=directory,
        sessions=sessions,
        audit=AuditTrail(settings, broker, "people"),
    )
    service = Service("people", routers=[oidc_router(sign_on)])
    service.on_start(broker.start)
    service.on_stop(broker.stop)
    if sign_on.client is not None:
        service.on_stop(sign_on.client.aclose)
    service.on_stop(redis.aclose)
    return service
