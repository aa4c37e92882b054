"""ingest's wiring table: what it reads, what it writes, its routes and its lifespan.

in                                                     -> out
POST /v1/events (ingest key)                           -> usage.events.v1 (encrypted envelope)
ingest.raw.v1 (group spendstream-ingest-raw)           -> usage.events.v1, ingest.rejected.v1
/v1/admin/* (admin key)                              -> ingest.{apikeys,datakeys,workspaces}.v1, retention.lifecycle.v1
retention.commands.v1 (group spendstream-ingest-erasure) -> tombstones, retention.reports.v1
ingest.{apikeys,datakeys,workspaces}.v1                -> replayed tables (authentication, keys, plans)
"""

from __future__ import annotations

from datetime import timedelta

from faststream import AckPolicy
from faststream.kafka import KafkaMessage

from spendstream.common.kafka import make_broker, raw_body, tolerant_parser
from spendstream.common.service import Service
from spendstream.common.tenants import KeyDirectory, KeyRing
from spendstream.common.topics import DELETION_COMMANDS, INGEST_RAW, topic_name
from spendstream.ingest.admin import Admin
from spendstream.ingest.admin_api import build_admin_router
from spendstream.ingest.api import build_router
from spendstream.ingest.auth import require
from spendstream.ingest.batches import BatchAcceptor
from spendstream.ingest.dedupe import Deduplicator
from spendstream.ingest.erasure import ERASURE_GROUP, Eraser
from spendstream.ingest.intake import RawIntake
from spendstream.ingest.limits import Limiter
from spendstream.ingest.redis_client import redis_client
from spendstream.ingest.settings import IngestSettings
from spendstream.ingest.topic_room import check_topic_room
from spendstream.ingest.workspaces import ControlPlane, WorkspaceDirectory


def create_service(settings: IngestSettings) -> Service:
    prefix = settings.topic_prefix
    # Envelopes carry compressed plaintext (envelope.py): Kafka compressing their ciphertext again only burnt CPU.
    broker = make_broker(settings, "ingest", compression_type=None)
    redis = redis_client(settings)
    keys = KeyDirectory(settings)
    keyring = KeyRing(settings)
    workspaces = WorkspaceDirectory(settings)
    control = ControlPlane(settings, broker)
    acceptor = BatchAcceptor(
        broker=broker,
        keyring=keyring,
        dedupe=Deduplicator(redis, settings.redis_prefix, settings.dedupe_window_hours * 3600),
        limiter=Limiter(
            redis, settings.redis_prefix, settings.rate_limit_events_per_second, settings.rate_limit_burst_events
        ),
        topic_prefix=prefix,
        max_age=timedelta(days=31 * settings.retention_months),
        publish_timeout=settings.publish_timeout_seconds,
    )
    intake = RawIntake(
        acceptor=acceptor,
        keys=keys,
        workspaces=workspaces,
        broker=broker,
        topic_prefix=prefix,
        max_record_bytes=settings.raw_max_record_bytes,
    )
    eraser = Eraser(
        control=control,
        keys=keys,
        keyring=keyring,
        workspaces=workspaces,
        redis=redis,
        redis_prefix=settings.redis_prefix,
        broker=broker,
        topic_prefix=prefix,
    )

    @broker.subscriber(
        topic_name(INGEST_RAW, prefix),
        group_id=f"{prefix}{settings.raw_intake_group_id}",
        batch=True,
        max_records=settings.raw_batch_max_records,
        batch_timeout_ms=settings.raw_batch_timeout_ms,
        auto_offset_reset="earliest",
        parser=tolerant_parser,
        decoder=raw_body,
        # Committed only after every record of the batch was forwarded or rejected; a failed forward brings
        # the batch again (intake.py: what that means for the records already forwarded).
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_raw_records(msg: KafkaMessage) -> None:
        await intake.handle_batch(msg.raw_message)

    @broker.subscriber(
        topic_name(DELETION_COMMANDS, prefix),
        group_id=f"{prefix}{ERASURE_GROUP}",
        auto_offset_reset="earliest",
        parser=tolerant_parser,
        decoder=raw_body,
        # Committed only after the report is out: a crash mid-erasure resumes it (every step is idempotent).
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_deletion_command(msg: KafkaMessage) -> None:
        await eraser.handle(msg.body)

    state = {"ready": False}

    async def start() -> None:
        await check_topic_room(settings)  # a topic that cannot hold ingest's largest envelope: refuse to start
        # Tables first: the consumers authenticate against them from their first record on.
        await keys.table.start()
        await keyring.table.start()
        await workspaces.table.start()
        await broker.start()
        state["ready"] = True

    async def stop() -> None:
        state["ready"] = False
        await broker.stop()
        await workspaces.table.stop()
        await keyring.table.stop()
        await keys.table.stop()
        await redis.aclose()

    admin = Admin(control, keys, keyring, workspaces)
    routers = [
        build_router(settings, acceptor, workspaces, require(keys, workspaces, "ingest")),
        build_admin_router(admin, require(keys, workspaces, "admin", allow_cancelled=True)),
    ]
    return Service("ingest", routers=list(routers), start=start, stop=stop, ready=lambda: state["ready"])
