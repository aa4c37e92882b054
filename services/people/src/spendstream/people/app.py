"""people's wiring table.

| in                                                       | out / owns                                        |
|----------------------------------------------------------|---------------------------------------------------|
| /v1/members, /v1/invitations, /v1/me/export, DELETE /v1/me | people.members.v1 (ids and roles); e-mails, names |
| /v1/invitations/accept, /v1/auth/link (no caller yet)    |   and credentials in its own Redis keys           |
| /v1/auth/* (sign-in, TOTP, OIDC)                         | sessions (Redis, `common/sessions.py`)            |
| every administrative action                              | audit.records.v1 (fail closed)                    |
| retention.commands.v1 (group spendstream-people-erasure) | retention.reports.v1                              |
| ingest.apikeys.v1, people.members.v1 (replayed tables)   | the access check of every route                   |
| invitations                                              | SMTP                                              |
"""

from __future__ import annotations

from typing import cast

import redis.asyncio as aioredis
from faststream.kafka import KafkaBroker

from spendstream.common.audit import AuditTrail
from spendstream.common.erasure_owner import serve_erasure
from spendstream.common.http_auth import Access
from spendstream.common.kafka import Publisher, make_broker
from spendstream.common.members import MemberDirectory
from spendstream.common.records import MemberRecord
from spendstream.common.service import Service
from spendstream.common.sessions import SessionRedis, SessionStore
from spendstream.common.tenants import KeyDirectory
from spendstream.common.topics import MEMBERS
from spendstream.people import signin_api, totp_api
from spendstream.people.directory import Directory
from spendstream.people.erasure import Eraser
from spendstream.people.invitations import Invitations
from spendstream.people.lockout import Lockout
from spendstream.people.mail import MailSender
from spendstream.people.members_api import MembersDeps, build_router
from spendstream.people.oidc import FlowCookie, OidcClient
from spendstream.people.oidc_api import SignOn, oidc_router
from spendstream.people.passwords import Passwords
from spendstream.people.redis_client import redis_client
from spendstream.people.settings import PeopleSettings
from spendstream.people.signin_links import SigninLinks
from spendstream.people.totp import SecondFactor
from spendstream.people.web import SignIn


def build_directory(settings: PeopleSettings, redis: aioredis.Redis, broker: KafkaBroker) -> Directory:
    """The directory over `redis`, publishing on `broker` (the CLI builds one the same way)."""
    members: Publisher[MemberRecord] = Publisher(broker, MEMBERS, settings.topic_prefix)

    async def publish(record: MemberRecord) -> None:
        await members.publish(record, record.member_id)

    return Directory(
        redis=redis,
        redis_prefix=settings.redis_prefix,
        kek=settings.kek_bytes(),
        publish=publish,
        sessions=SessionStore(settings, cast(SessionRedis, redis)),
        tombstone=members.tombstone,
    )


def create_service(settings: PeopleSettings) -> Service:
    broker = make_broker(settings, "people")
    redis = redis_client(settings)
    # redis-py's asyncio methods are typed as returning Awaitable, the protocol's as coroutines: the same calls.
    sessions = SessionStore(settings, cast(SessionRedis, redis))
    audit = AuditTrail(settings, broker, "people")
    keys = KeyDirectory(settings)
    member_table = MemberDirectory(settings)
    directory = build_directory(settings, redis, broker)
    passwords = Passwords(settings)
    invitations = Invitations(redis, settings.redis_prefix, settings.invitation_ttl_seconds)
    access = Access(keys, member_table, sessions, audit)
    signin = SignIn(
        settings=settings,
        directory=directory,
        sessions=sessions,
        passwords=passwords,
        lockout=Lockout(settings, redis),
        factor=SecondFactor(settings, redis, directory),
        audit=audit,
        access=access,
    )
    deps = MembersDeps(
        access=access,
        directory=directory,
        invitations=invitations,
        links=SigninLinks(redis, settings.redis_prefix, settings.signin_link_ttl_seconds),
        mail=MailSender(settings),
        passwords=passwords,
        sessions=sessions,
        audit=audit,
        public_url=settings.link_base,
        set_cookie=signin.set_cookie,
        clear_cookie=signin.clear_cookie,
    )
    eraser = Eraser(directory=directory, invitations=invitations, redis=redis, redis_prefix=settings.redis_prefix)
    serve_erasure(broker, eraser, settings.topic_prefix)

    sign_on = SignOn(
        signin=signin,
        client=OidcClient(settings) if settings.oidc_configured else None,
        cookie=FlowCookie(settings.kek_bytes()),
    )

    service = Service(
        "people",
        routers=[signin_api.router(signin), totp_api.router(signin), build_router(deps), oidc_router(sign_on)],
    )
    service.on_start(keys.table.start, member_table.table.start, broker.start)
    service.on_stop(broker.stop, member_table.table.stop, keys.table.stop, redis.aclose)
    if sign_on.client is not None:
        service.on_stop(sign_on.client.aclose)
    return service
