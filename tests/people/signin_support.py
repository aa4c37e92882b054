"""A running people service for sign-in tests: cheap argon2id, short lockouts, its own view of the directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import httpx
import redis.asyncio as aioredis

from spendstream.common.kafka import Publisher, make_broker
from spendstream.common.records import AuditRecord, MemberRecord, Role
from spendstream.common.service import behind_proxies, build_http_app
from spendstream.common.sessions import SESSION_COOKIE, SessionRedis, SessionStore
from spendstream.common.topics import MEMBERS
from spendstream.people.app import create_service
from spendstream.people.directory import Directory, Membership
from spendstream.people.passwords import Passwords
from spendstream.people.settings import PeopleSettings
from tests.support import Isolation, audit_records

PASSWORD = "correct-Horse-staple-42"
# argon2id at its smallest cost the settings allow: the tests check behaviour, not strength.
CHEAP_HASHES: dict[str, Any] = {"password_time_cost": 1, "password_memory_kib": 8 * 1024, "password_parallelism": 1}


@dataclass
class People:
    """The service's HTTP client (a cookie jar like a browser's), its settings and a directory on its Redis."""

    client: httpx.AsyncClient
    settings: PeopleSettings
    directory: Directory
    sessions: SessionStore
    passwords: Passwords
    iso: Isolation

    async def member(
        self, email: str, password: str | None = PASSWORD, role: Role = "admin", workspace_id: str = "ws_test"
    ) -> Membership:
        """A person with this password (None: single sign-on only), an active member of the workspace."""
        password_hash = await self.passwords.hash(password) if password is not None else None
        person = await self.directory.create_person(email, "Ada Lovelace", password_hash)
        return await self.directory.add_member(workspace_id, person.person_id, role)

    async def signin(self, email: str, password: str = PASSWORD, **extra: Any) -> httpx.Response:
        return await self.client.post("/v1/auth/signin", json={"email": email, "password": password, **extra})

    def session_cookie(self) -> str | None:
        return self.client.cookies.get(SESSION_COOKIE)

    async def audit_records(self) -> list[AuditRecord]:
        return await audit_records(self.iso)


@asynccontextmanager
async def running_people(iso: Isolation, *, https: bool = False, **overrides: Any) -> AsyncIterator[People]:
    """The people service in this event loop, reached over http:// (or https://) by an ASGI client."""
    settings = iso.settings(PeopleSettings, **{**CHEAP_HASHES, **overrides})
    app = build_http_app([create_service(settings)])
    redis = aioredis.Redis.from_url(settings.redis_url)
    broker = make_broker(settings, "tests")
    await broker.connect()
    members = Publisher(broker, MEMBERS, settings.topic_prefix)

    async def publish(record: MemberRecord) -> None:
        await members.publish(record, record.member_id)

    sessions = SessionStore(settings, cast(SessionRedis, redis))
    directory = Directory(
        redis=redis, redis_prefix=settings.redis_prefix, kek=settings.kek_bytes(), publish=publish, sessions=sessions
    )
    try:
        async with app.router.lifespan_context(app):
            # What `serve` puts in front of the app: the trusted proxies' forwarding headers believed, no others.
            transport = httpx.ASGITransport(app=behind_proxies(app, settings.trusted_proxies))
            base = "https://people.test" if https else "http://people.test"
            async with httpx.AsyncClient(transport=transport, base_url=base) as client:
                yield People(client, settings, directory, sessions, Passwords(settings), iso)
    finally:
        await broker.stop()
        await redis.aclose()


def set_cookie_headers(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def cookie_attributes(header: str) -> tuple[str, set[str]]:
    """The cookie's value and its attributes as written (`HttpOnly`, `SameSite=Lax`, `Path=/`, ...)."""
    first, *rest = [part.strip() for part in header.split(";")]
    return first.split("=", 1)[1], set(rest)
