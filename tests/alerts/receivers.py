"""Real receivers for alert deliveries: an HTTP webhook endpoint that checks signatures and refuses replays,
an SMTP server (aiosmtpd), and a wait for a consumer group to have committed everything on a topic."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiosmtpd.controller import Controller

from spendstream.alerts.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from spendstream.common.service import Service, build_http_app
from spendstream.common.topics import AnyTopic, topic_name
from tests.support import Isolation, eventually, free_port


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """POST /hook on 127.0.0.1: 200 for a fresh, correctly signed request, 401 for a bad signature or stale
    timestamp, 409 for a replay of a request already accepted. Can be stopped and started on the same port."""

    secret: bytes
    port: int = field(default_factory=free_port)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    raw: list[Request] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    _seen: set[tuple[str, str]] = field(default_factory=set)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def answer(self, request: Request) -> int:
        stamp = request.headers.get(TIMESTAMP_HEADER.lower(), "")
        sig = request.headers.get(SIGNATURE_HEADER.lower(), "")
        if not verify(self.secret, stamp, request.body, sig):
            return 401
        replay_key = (request.headers.get(DELIVERY_HEADER.lower(), ""), sig)
        if replay_key in self._seen:
            return 409
        self._seen.add(replay_key)
        self.raw.append(request)
        self.accepted.append(json.loads(request.body))
        return 200

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status = self.answer(Request(headers, body))
            if status != 200:
                self.refused.append(status)
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
        finally:
            writer.close()

    def count(self, kind: str, pct: int | None = None) -> int:
        return sum(1 for a in self.accepted if a["kind"] == kind and (pct is None or a["threshold_pct"] == pct))


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


class SmtpServer:
    """A real SMTP server (aiosmtpd, plain, no STARTTLS) collecting what it receives."""

    def __init__(self) -> None:
        self.port = free_port()
        self._inbox = _Inbox()
        self._controller = Controller(self._inbox, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[Message]:
        return self._inbox.messages

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def subjects(self) -> list[str]:
        return sorted(str(m["Subject"]) for m in self.messages)


async def settled(iso: Isolation, group: str, topic: AnyTopic) -> None:
    """Wait until `group` has committed every record `topic` holds now (every partition's end offset)."""
    name = topic_name(topic, iso.prefix)
    consumer = AIOKafkaConsumer(bootstrap_servers=iso.stack.kafka, group_id=None)
    admin = AIOKafkaAdminClient(bootstrap_servers=iso.stack.kafka)
    await consumer.start()
    await admin.start()
    try:

        async def known() -> set[int] | None:
            await consumer._client.force_metadata_update()
            found: set[int] | None = consumer.partitions_for_topic(name)
            return found

        partitions = [TopicPartition(name, p) for p in sorted(await eventually(known, timeout=10))]
        ends = await consumer.end_offsets(partitions)

        async def done() -> bool:
            committed = await admin.list_consumer_group_offsets(f"{iso.prefix}{group}")
            return all(ends[tp] == 0 or (tp in committed and committed[tp].offset >= ends[tp]) for tp in partitions)

        await eventually(done, timeout=60, interval=0.2)
    finally:
        await admin.close()
        await consumer.stop()


@asynccontextmanager
async def listening(service: Service) -> AsyncIterator[str]:
    """Serve one service on a real 127.0.0.1 port (alerts reaches rollup over real HTTP)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            build_http_app([service]), host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
        )
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: _true(server.started), timeout=60)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def _true(value: bool) -> bool:
    return value
