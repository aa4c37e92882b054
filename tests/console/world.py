"""The browser tests' world: one real `spendstream up` (the six services and the console in one process) on the
shared stack with its own isolation, an SMTP server receiving its invitations, a workspace with usage spread
over the last days, an owner signed in by the operator's one-time link, and a person who joined by invitation
and signs in with a password; plus Debian's Chromium driven by Playwright."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from spendstream.common.sessions import CSRF_HEADER, SESSION_COOKIE
from spendstream.people.bootstrap import add_member
from spendstream.people.settings import PeopleSettings
from tests.people.world import FAST_HASHING, Mailbox, session_from, token_in
from tests.support import Isolation, create_workspace, eventually, free_port

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "services" / "console" / "web" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "docs" / "console"
PASSWORD = "amber-lighthouse-42-quietly"
XSS_TAG = "<img src=x onerror=alert(1)>"
# Enough features that a chart keeps the top ones and sums the rest as "other".
MANY_FEATURES = [f"feature-{i:02d}" for i in range(14)]


@dataclass
class Member:
    email: str
    member_id: str
    session_id: str
    csrf: str

    def headers(self) -> dict[str, str]:
        return {"Cookie": f"{SESSION_COOKIE}={self.session_id}", CSRF_HEADER: self.csrf}


@dataclass
class World:
    url: str
    workspace_id: str
    keys: dict[str, str]
    owner: Member
    email: str  # the person who signs in through the console's form
    password: str
    iso: Isolation
    mailbox: Mailbox
    people: PeopleSettings
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30)

    async def usage(self, **params: Any) -> dict[str, Any]:
        async with self.client() as client:
            response = await client.get(
                "/v1/usage", params=params, headers={"Authorization": f"Bearer {self.keys['read']}"}
            )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def invite(self, email: str, role: str) -> str:
        """The owner invites `email`; the token of the e-mail that arrives."""
        seen = len(self.mailbox.messages)
        async with self.client() as client:
            response = await client.post(
                "/v1/invitations", json={"email": email, "role": role}, headers=self.owner.headers()
            )
        assert response.status_code == 201, response.text
        return token_in(await self.mailbox.next_to(email, seen))

    async def join(self, email: str, role: str) -> None:
        """Invited, accepted with PASSWORD over HTTP: a person who can sign in through the form."""
        token = await self.invite(email, role)
        async with self.client() as client:
            response = await client.post(
                "/v1/invitations/accept", json={"token": token, "name": email.split("@")[0], "password": PASSWORD}
            )
        assert response.status_code == 200, response.text


def seed_events(now: datetime) -> list[dict[str, Any]]:
    """Usage over the last four days: three models, many features (one of them markup), several customers."""
    events: list[dict[str, Any]] = []
    models = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-3-5-haiku-20241022")]
    for day in range(4):
        # 01:00 on each day, but never ahead of now: ingest refuses a timestamp more than 5 minutes in the future.
        stamp = min((now - timedelta(days=day)).replace(hour=1, minute=0, second=0, microsecond=0), now)
        for i, feature in enumerate([XSS_TAG, "chat", "search", *MANY_FEATURES]):
            provider, model = models[(i + day) % len(models)]
            events.append(
                {
                    "event_id": uuid.uuid4().hex,
                    "provider": provider,
                    "model": model,
                    # The markup feature is the dearest, so that it is among every page's top rows.
                    "input_tokens": 60_000 if feature == XSS_TAG else 1000 + 137 * i + day,
                    "output_tokens": 200 + 11 * i,
                    "latency_ms": 300,
                    "timestamp": stamp.isoformat(),
                    "tags": {"feature": feature, "customer_id": f"cust-{i % 4}"},
                }
            )
    events.append(
        {
            "event_id": uuid.uuid4().hex,
            "provider": "openai",
            "model": "gpt-4o-mini",
            "input_tokens": 500,
            "output_tokens": 50,
            "latency_ms": 200,
            "timestamp": now.isoformat(),
            "tags": {"feature": "chat", "customer_id": "cust-erase-me"},
        }
    )
    return events


def start_monolith(iso: Isolation, smtp_port: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **iso.env(
            http_port=str(port),
            public_url=url,
            smtp_host="127.0.0.1",
            smtp_port=str(smtp_port),
            smtp_starttls="false",
            **{k: str(v) for k, v in FAST_HASHING.items()},
        ),
    }
    env.pop("SPENDSTREAM_CLICKHOUSE_URL", None)  # the embedded default: chDB under the data directory
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "spendstream.cli", "up"], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, log.read_text()[-4000:]
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "spendstream up did not become ready"
        time.sleep(0.2)


async def owner_by_link(iso: Isolation, people: PeopleSettings, url: str, workspace_id: str) -> Member:
    """`spendstream member add` without SMTP: the printed one-time link, followed once."""
    email = "owner@example.com"
    added = await add_member(people.model_copy(update={"smtp_host": ""}), workspace_id, email, "owner")
    assert added.link is not None
    link = urlsplit(added.link)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        followed = await client.get(f"{link.path}?{link.query}")
        assert followed.status_code == 302, followed.text
        session_id = session_from(followed)
        client.cookies.clear()
        me = await client.get("/v1/me", headers={"Cookie": f"{SESSION_COOKIE}={session_id}"})
    assert me.status_code == 200, me.text
    return Member(email, me.json()["member_id"], session_id, me.json()["csrf_token"])


async def build_world(iso: Isolation, mailbox: Mailbox, smtp_port: int, log: Path) -> World:
    process, url = start_monolith(iso, smtp_port, log)
    try:
        ws = await create_workspace(iso, name="console")
        keys = {k: ws[k] for k in ("ingest", "read", "admin")}
        people = iso.settings(PeopleSettings, http_port=int(urlsplit(url).port or 0), public_url=url)
        events = seed_events(datetime.now(UTC))
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:

            async def accepted() -> bool:
                response = await client.post(
                    "/v1/events", json={"events": events}, headers={"Authorization": f"Bearer {keys['ingest']}"}
                )
                return response.status_code == 202

            await eventually(accepted, timeout=30, interval=0.5)  # until ingest has replayed the new workspace
        owner = await owner_by_link(iso, people, url, ws["workspace_id"])
        world = World(url, ws["workspace_id"], keys, owner, "finance@example.com", PASSWORD, iso, mailbox, people, log)
        world.process = process
        await world.join(world.email, "owner")

        async def all_counted() -> bool:
            return int(
                (await world.usage(**{"from": str(datetime.now(UTC).date() - timedelta(days=6))}))["totals"]["requests"]
            ) == len(events)

        await eventually(all_counted, timeout=60, interval=0.5)
        return world
    except BaseException:
        process.terminate()
        process.wait(timeout=60)
        raise


async def stop_world(world: World) -> None:
    if world.process is not None:
        world.process.terminate()
        await asyncio.to_thread(world.process.wait, 60)
