"""people's wiring table.

| in                                   | out / owns                                             |
|--------------------------------------|--------------------------------------------------------|
| /v1/members, /v1/invitations, /v1/me | people.members.v1 (ids and roles); e-mails, names and  |
| /v1/auth/* (sign-in, TOTP, OIDC)     |   credentials in its own Redis keys; sessions (Redis)  |
| every action                         | audit.records.v1                                       |
"""

from __future__ import annotations

from typing import cast

from spendstream.common.audit import AuditTrail
from spendstream.common.kafka import Publisher, make_broker
from spendstream.common.records import MemberRecord
from spendstream.common.service import Service
from spendstream.common.sessions import SessionRedis, SessionStore
from spendstream.common.topics import MEMBERS
from spendstream.people import signin_api, totp_api
from spendstream.people.directory import Directory
from spendstream.people.lockout import Lockout
from spendstream.people.oidc import FlowCookie, OidcClient
from spendstream.people.oidc_api import SignOn, oidc_router
from spendstream.people.passwords import Passwords
from spendstream.people.redis_client import redis_client
from spendstream.people.settings import PeopleSettings
from spendstream.people.totp import SecondFactor
from spendstream.people.web import SignIn


def create_service(settings: PeopleSettings) -> Service:
    broker = make_broker(settings, "people")
    redis = redis_client(settings)
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
    signin = SignIn(
        settings=settings,
        directory=directory,
        sessions=sessions,
        passwords=Passwords(settings),
        lockout=Lockout(settings, redis),
        factor=SecondFactor(settings, redis, directory),
        audit=AuditTrail(settings, broker, "people"),
    )
    sign_on = SignOn(
        signin=signin,
        client=OidcClient(settings) if settings.oidc_configured else None,
        cookie=FlowCookie(settings.kek_bytes()),
    )
    service = Service("people", routers=[signin_api.router(signin), totp_api.router(signin), oidc_router(sign_on)])
    service.on_start(broker.start)
    service.on_stop(broker.stop, redis.aclose)
    if sign_on.client is not None:
        service.on_stop(sign_on.client.aclose)
    return service
