"""ingest's wiring table: what it reads, what it writes, its routes and its lifespan.

in                                                     -> out
POST /v1/events (events.write: an ingest key)          -> usage.events.v1 (encrypted envelope)
POST /v1/traces (OTLP/HTTP, events.write)              -> usage.events.v1 (one event per GenAI span)
ingest.raw.v1 (group spendstream-ingest-raw)           -> usage.events.v1, ingest.rejected.v1
/v1/admin/* (keys.*, settings.write, workspace.*)      -> ingest.{apikeys,datakeys,workspaces}.v1,
                                                          retention.lifecycle.v1, audit.records.v1 (before each change)
people.members.v1, ingest.apikeys.v1                   -> replayed tables (keys and sessions' members, roles)
retention.commands.v1 (group spendstream-ingest-erasure) -> tombstones, retention.reports.v1
every hour (data-key upkeep)                           -> tombstones of long-retired data-key versions
ingest.{apikeys,datakeys,workspaces}.v1                -> replayed tables (authentication, keys, plans)
"""

from __future__ import annotations

from datetime import timedelta

from faststream import AckPolicy

from spendstream.common.erasure_owner import serve_erasure
from spendstream.common.http_auth import service_access
from spendstream.common.kafka import RawBatch, make_broker, subscribe_batch
from spendstream.common.service import Service
from spendstream.common.tenants import KeyDirectory, KeyRing
from spendstream.common.topics import INGEST_RAW
from spendstream.ingest.admin import Admin
from spendstream.ingest.admin_api import build_admin_router
from spendstream.ingest.api import build_router
from spendstream.ingest.auth import workspace_gate
from spendstream.ingest.batches import BatchAcceptor
from spendstream.ingest.datakey_upkeep import DataKeyUpkeep
from spendstream.ingest.dedupe import Deduplicator
from spendstream.ingest.erasure import Eraser
from spendstream.ingest.intake import RawIntake
from spendstream.ingest.limits import Limiter
from spendstream.ingest.otlp_api import build_otlp_router
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
    access, members = service_access(settings, "ingest", keys, broker, redis, workspace_gate(workspaces))
    intake = RawIntake(
        acceptor=acceptor,
        members=members,
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
        topic_prefix=prefix,
    )

    async def on_raw_records(batch: RawBatch) -> None:
        await intake.handle_batch(batch.records)

    subscribe_batch(
        broker,
        INGEST_RAW,
        prefix=prefix,
        group=settings.raw_intake_group_id,
        handler=on_raw_records,
        # Committed only after every record of the batch was forwarded or rejected; a failed forward brings
        # the batch again (intake.py: what that means for the records already forwarded).
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_records=settings.raw_batch_max_records,
        batch_timeout_ms=settings.raw_batch_timeout_ms,
    )
    serve_erasure(broker, eraser, prefix)

    admin = Admin(
        control,
        keys,
        keyring,
        workspaces,
        rotation_interval=timedelta(seconds=settings.data_key_rotation_interval_seconds),
    )
    events = access.require("events.write")
    routers = [
        build_router(settings, acceptor, workspaces, events),
        build_otlp_router(settings, acceptor, workspaces, events),
        build_admin_router(admin, access),
    ]
    service = Service("ingest", routers=routers)

    async def topic_room() -> None:  # a topic that cannot hold ingest's largest envelope: refuse to start
        await check_topic_room(settings)

    # Tables first: the consumers authenticate against them from their first record on.
    service.on_start(
        topic_room, keys.table.start, members.start, keyring.table.start, workspaces.table.start, broker.start
    )
    service.on_stop(broker.stop, workspaces.table.stop, keyring.table.stop, members.stop, keys.table.stop, redis.aclose)
    service.every("data-key-upkeep", settings.data_key_upkeep_interval_seconds, DataKeyUpkeep(control, keyring).run)
    return service
