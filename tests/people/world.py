"""A people service serving in the test's event loop, an SMTP server (aiosmtpd) receiving its mail, and members
signed in through the real routes (the operator's one-time link, an accepted invitation)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis.asyncio as aioredis
from aiosmtpd.controller import Controller

from spendstream.common.records import Role
from spendstream.common.sessions import CSRF_HEADER, SESSION_COOKIE
from spendstream.people.app import create_service
from spendstream.people.bootstrap import add_member
from spendstream.people.directory import normalise_email
from spendstream.people.settings import PeopleSettings
from tests.support import Isolation, eventually, free_port, serving

# argon2id at its cheapest allowed cost: tests check behaviour, not the hash's strength.
FAST_HASHING: dict[str, Any] = {"password_memory_kib": 8192, "password_time_cost": 1, "password_parallelism": 1}
PASSWORD = "violet-harbour-7-lanterns"


@dataclass
class Mailbox:
    """aiosmtpd's handler: every message it accepted, parsed."""

    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    async def next_to(self, address: str, seen: int = 0) -> Message:
        async def arrived() -> Message | None:
            found = [m for m in self.messages[seen:] if m["To"] == address]
            return found[-1] if found else None

        return await eventually(arrived, timeout=10)


def token_in(message: Message) -> str:
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    found = re.search(r"#token=([A-Za-z0-9_-]+)", body.decode())
    assert found, "the invitation e-mail carries no link"
    return found.group(1)


@dataclass(frozen=True)
class Session:
    """A signed-in member, as a browser holds them: the cookie and the CSRF token."""

    member_id: str
    workspace_id: str
    role: Role
    session_id: str
    csrf: str

    def headers(self) -> dict[str, str]:
        return {"Cookie": f"{SESSION_COOKIE}={self.session_id}", CSRF_HEADER: self.csrf}


def session_from(response: httpx.Response) -> str:
    cookie = response.headers.get("set-cookie", "")
    found = re.search(rf"{SESSION_COOKIE}=([^;]+)", cookie)
    assert found, f"no session cookie in {response.status_code}"
    return found.group(1)


@dataclass
class People:
    client: httpx.AsyncClient
    settings: PeopleSettings
    iso: Isolation
    mailbox: Mailbox

    async def session(self, session_id: str) -> Session:
        me = await self.client.get("/v1/me", headers={"Cookie": f"{SESSION_COOKIE}={session_id}"})
        assert me.status_code == 200, me.text
        body = me.json()
        return Session(body["member_id"], body["workspace_id"], body["role"], session_id, body["csrf_token"])

    async def operator_adds(self, workspace_id: str, email: str, role: Role = "owner") -> Session:
        """`spendstream member add` without SMTP: the printed one-time link, followed once."""
        settings = self.settings.model_copy(update={"smtp_host": ""})
        added = await add_member(settings, workspace_id, email, role)
        assert added.link is not None and not added.mailed
        url = urlsplit(added.link)
        response = await self.client.get(f"{url.path}?{url.query}")
        assert response.status_code == 302, response.text
        self.client.cookies.clear()
        return await self.session(session_from(response))

    async def invite(self, by: Session, email: str, role: Role) -> tuple[str, str]:
        """(invitation id, token from the e-mail)."""
        seen = len(self.mailbox.messages)
        response = await self.client.post("/v1/invitations", json={"email": email, "role": role}, headers=by.headers())
        assert response.status_code == 201, response.text
        return response.json()["invitation_id"], token_in(await self.mailbox.next_to(normalise_email(email), seen))

    async def accept(self, token: str, name: str = "Invited Person", password: str = PASSWORD) -> httpx.Response:
        response = await self.client.post(
            "/v1/invitations/accept", json={"token": token, "name": name, "password": password}
        )
        self.client.cookies.clear()
        return response

    async def joins(self, by: Session, email: str, role: Role) -> Session:
        """Invited by `by`, accepted, signed in."""
        _, token = await self.invite(by, email, role)
        accepted = await self.accept(token)
        assert accepted.status_code == 200, accepted.text
        return await self.session(session_from(accepted))

    async def members(self, by: Session) -> dict[str, dict[str, Any]]:
        response = await self.client.get("/v1/members", headers=by.headers())
        assert response.status_code == 200, response.text
        return {m["member_id"]: m for m in response.json()["members"]}


@asynccontextmanager
async def mail_server() -> AsyncIterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    await asyncio.to_thread(controller.start)
    try:
        yield mailbox, port
    finally:
        await asyncio.to_thread(controller.stop)


@asynccontextmanager
async def people_service(iso: Isolation, **overrides: Any) -> AsyncIterator[People]:
    async with mail_server() as (mailbox, port):
        values: dict[str, Any] = {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_starttls": False}
        settings = iso.settings(PeopleSettings, **{**values, **FAST_HASHING, **overrides})
        async with serving([create_service(settings)]) as client:
            yield People(client, settings, iso, mailbox)


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


async def redis_dump(settings: PeopleSettings) -> bytes:
    """Every key and value under the test's Redis prefix (every service's), as one blob."""
    redis = aioredis.Redis.from_url(settings.redis_url)
    blob = bytearray()
    try:
        async for key in redis.scan_iter(match=f"{settings.redis_prefix}*", count=1000):
            blob += _bytes(key) + b"\n"
            kind = _bytes(await redis.type(key))
            if kind == b"string":
                blob += _bytes(await redis.get(key) or b"") + b"\n"
            elif kind == b"set":
                blob += b" ".join(_bytes(m) for m in await redis.smembers(key)) + b"\n"
            elif kind == b"hash":
                for k, v in (await redis.hgetall(key)).items():
                    blob += _bytes(k) + b"=" + _bytes(v) + b"\n"
            else:
                blob += b"<" + kind + b">\n"
    finally:
        await redis.aclose()
    return bytes(blob)
