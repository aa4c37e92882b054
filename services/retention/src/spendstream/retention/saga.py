"""The erasure saga's coordinator: requests in, commands to the owners, reports back, a receipt out.

Per request, each step is written to `retention.requests.v1` before the next one starts, so a crash at any
line resumes from the topic:
  requested  -> publish a DeletionCommand (every owner consumes it) -> write `executing`. The owners waited
                for are those the installation runs (`erasure_owners`, default every one of `OWNERS`).
                A crash between the two re-sends the command; owners treat a repeated request id as a no-op.
  executing  -> each owner's DeletionReport is written into the request *before* its offset is committed,
                so a report is never lost; on restart the command is re-sent once to hurry silent owners.
                An owner silent for `command_timeout_seconds` (by the injected clock) gets it again, up to
                `max_attempts`; then the request fails and names it.
  all done   -> write `awaiting_compaction`: the owners deleted, but old values (the wrapped data key, budget
                names and scopes) stay readable on the compacted topics until the broker compacts them.
                `shredding.leftovers` reads those topics from the earliest offset, at once and then every
                `compaction_check_seconds` and on every tick, nudging a roll of the active segment, until
                nothing of the subject is readable; past `compaction_bound_seconds` the request fails.
  nothing left -> the receipt goes to `audit.receipts.v1` first, then the final `verified`/`failed` record.
                A crash in between re-checks the topics and rebuilds the receipt from the stored reports.
One coordinator (one replica) per installation: steps are serialised by one lock, and revisions only grow.
A request is known by its key, `<workspace_id>/<request_id>` (`requests.request_key`): ids are per workspace.
"""

from __future__ import annotations

import asyncio
import logging

from faststream.kafka import KafkaBroker

from spendstream.common.erasure import (
    CompactionCheck,
    DeletionCommand,
    DeletionReport,
    DeletionRequest,
    Receipt,
    request_key,
)
from spendstream.common.kafka import CompactedTable, Publisher
from spendstream.common.service import cancel_and_wait
from spendstream.common.topics import AUDIT, DELETION_COMMANDS, DELETION_REQUESTS
from spendstream.retention import metrics
from spendstream.retention.clock import Clock
from spendstream.retention.receipts import owner_receipt, residue, subject_hash
from spendstream.retention.settings import RetentionSettings
from spendstream.retention.shredding import leftovers, nudge

log = logging.getLogger(__name__)


class RequestConflict(Exception):
    """A request id that already names a request of the same workspace with another scope."""


class Coordinator:
    def __init__(self, settings: RetentionSettings, broker: KafkaBroker, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._kek = settings.kek_bytes()
        self._owners = settings.owners()  # the installed owners: a request waits for each one's report
        self._broker = broker
        self._requests = Publisher(broker, DELETION_REQUESTS, settings.topic_prefix)
        self._commands = Publisher(broker, DELETION_COMMANDS, settings.topic_prefix)
        self._receipts = Publisher(broker, AUDIT, settings.topic_prefix)
        # The newest state of each request by its key, as retention wrote or adopted it (highest revision
        # wins); the table is the literal log, whose latest record a duplicate submission may have overwritten.
        self._state: dict[str, DeletionRequest] = {}
        # Topic keys other than a request's own that hold a record of it (the bare request id of a record
        # written before ids were scoped, or by a tool): tombstoned once the request is written under its key,
        # so compaction drops them (they may hold the raw customer id).
        self._strays: dict[str, set[str]] = {}
        self.table: CompactedTable[DeletionRequest] = CompactedTable(
            settings, DELETION_REQUESTS, on_change=self._observed
        )
        self._lock = asyncio.Lock()
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._started = False

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Replay every request, repair what a crash left half-written, then resume the unfinished ones."""
        await self.table.start()
        async with self._lock:
            for key, state in list(self._state.items()):
                latest = self.table.get(key)
                if (latest is not None and latest.revision == 0 and state.revision > 0) or self._strays.get(key):
                    # A duplicate submission overwrote a request already known, or the request still sits under
                    # another key: write the real state under its own key (which tombstones the others).
                    await self._write(state)
            active = [r for r in self._state.values() if not r.terminal]
            for request in active:
                if request.state == "executing":
                    # The command may have been lost with the crash; owners treat a repeat as a no-op.
                    await self._command(request)
        self._started = True
        self._worker = asyncio.create_task(self._work(), name="retention:saga")
        for request in active:
            self._queue.put_nowait(request.key)

    async def stop(self) -> None:
        await cancel_and_wait(self._worker)
        await self.table.stop()

    # -- reads ---------------------------------------------------------------------------------------------

    def get(self, workspace_id: str, request_id: str) -> DeletionRequest | None:
        return self._state.get(request_key(workspace_id, request_id))

    def with_id(self, request_id: str) -> list[DeletionRequest]:
        """Every workspace's request of that id (ids are per workspace): the receipt token tells which is asked for."""
        return [r for r in self._state.values() if r.request_id == request_id]

    def requests(self) -> list[DeletionRequest]:
        return list(self._state.values())

    def of_workspace(self, workspace_id: str) -> list[DeletionRequest]:
        """Every request of one workspace, in no particular order; never another's."""
        return [r for r in self._state.values() if r.workspace_id == workspace_id]

    # -- submissions ---------------------------------------------------------------------------------------

    async def submit(self, request: DeletionRequest) -> tuple[DeletionRequest, bool]:
        """Record a new request (returns it, True) or return the workspace's existing one with that id (it, False)."""
        async with self._lock:
            existing = self._state.get(request.key)
            if existing is not None:
                if existing.customer_hash != self._hash(request.workspace_id, request.customer_id):
                    raise RequestConflict(request.request_id)
                return existing, False
            fresh = request.model_copy(
                update={
                    "state": "requested",
                    "revision": 1,
                    "attempts": 0,
                    "reports": {},
                    "receipt": None,
                    "customer_hash": self._hash(request.workspace_id, request.customer_id),
                    "updated_at": self._clock.now(),
                }
            )
            await self._write(fresh)
        self._queue.put_nowait(fresh.key)
        return fresh, True

    def _hash(self, workspace_id: str, customer_id: str | None) -> str | None:
        return subject_hash(self._kek, workspace_id, customer_id) if customer_id is not None else None

    def _observed(self, topic_key: str, value: DeletionRequest | None) -> None:
        """Every record of the requests topic, in log order: adopt newer states and outside submissions."""
        if value is None:
            for strays in self._strays.values():
                strays.discard(topic_key)
            return
        key = value.key
        if topic_key != key:
            self._strays.setdefault(key, set()).add(topic_key)
        known = self._state.get(key)
        adopted = known is None or value.revision > known.revision
        if adopted:
            if value.revision == 0:
                # Submitted straight to the topic by a compliance tool: hash the subject now.
                value = value.model_copy(
                    update={"state": "requested", "customer_hash": self._hash(value.workspace_id, value.customer_id)}
                )
            self._state[key] = value
            if self._started and not value.terminal:
                self._queue.put_nowait(key)
        if self._started and (topic_key != key or (not adopted and value.revision == 0 and value != known)):
            # A replayed submission of a known request is a no-op, but it became the latest record of the
            # compacted topic, or the request sits under another key: write the real state under its own key.
            self._queue.put_nowait(f"restore:{key}")

    # -- the saga ------------------------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                async with self._lock:
                    if item.startswith("restore:"):
                        await self._write(self._state[item.removeprefix("restore:")])
                    else:
                        await self._advance(item)
            except Exception:
                # Kafka refused a write: the topic still holds the previous step, which the next tick or
                # restart resumes from. Logged without content.
                log.exception("saga step failed", extra={"request_id": item})

    async def _advance(self, key: str) -> None:
        request = self._state.get(key)
        if request is None or request.terminal:
            return
        if request.state == "awaiting_compaction":
            await self._check_compaction(request)
            return
        if request.state == "requested":
            await self._command(request)
            request = await self._write(
                request.model_copy(update={"state": "executing", "attempts": 1, "commanded_at": self._clock.now()})
            )
        await self._conclude_if_complete(request)

    async def _command(self, request: DeletionRequest) -> None:
        command = DeletionCommand(
            request_id=request.request_id, scope=request.scope(), issued_at=request.commanded_at or self._clock.now()
        )
        await self._commands.publish(command, request.request_id)
        metrics.COMMANDS.inc()
        log.info(
            "deletion command sent", extra={"request_id": request.request_id, "workspace_id": request.workspace_id}
        )

    async def on_report(self, report: DeletionReport) -> None:
        """Store an owner's report in its request (durably, before the caller commits the offset)."""
        async with self._lock:
            request = self._state.get(request_key(report.scope.workspace_id, report.request_id))
            if request is None or request.terminal or request.state == "awaiting_compaction":
                return  # a late repeat for a finished request, or another installation's: nothing to do
            if report.scope != request.scope():
                log.warning(
                    "report scope does not match its request",
                    extra={"request_id": request.request_id, "owner": report.owner},
                )
                return
            previous = request.reports.get(report.owner)
            if previous is not None and previous.status == "done":
                return  # the first complete report stands; a repeat after a re-sent command changes nothing
            reports = {**request.reports, report.owner: report}
            request = await self._write(request.model_copy(update={"reports": reports}))
            metrics.REPORTS.labels(report.owner, report.status).inc()
            await self._conclude_if_complete(request)

    async def _conclude_if_complete(self, request: DeletionRequest) -> None:
        done = {o: r for o, r in request.reports.items() if r.status == "done"}
        if set(self._owners) <= set(done):
            left = [f"{o}:{store}" for o in self._owners for store in residue(done[o])]
            if left:
                await self._finish(request, "failed", "residue:" + ",".join(left))
            else:
                request = await self._write(
                    request.model_copy(update={"state": "awaiting_compaction", "owners_done_at": self._clock.now()})
                )
                await self._check_compaction(request)

    async def _check_compaction(self, request: DeletionRequest) -> None:
        """Verified once no record of the subject is readable on the compacted topics; failed past the bound."""
        found = await leftovers(self._settings, request.workspace_id, request.customer_id, self._owners)
        check = CompactionCheck(
            bound_seconds=self._settings.compaction_bound_seconds,
            topics=found.topics,
            records_left=found.total,
            checked_at=self._clock.now(),
        )
        if not found.total:
            await self._finish(request, "verified", None, check)
            return
        assert request.owners_done_at is not None
        waited = (self._clock.now() - request.owners_done_at).total_seconds()
        if waited > self._settings.compaction_bound_seconds:
            left = ",".join(f"{name}={n}" for name, n in sorted(found.records.items()) if n)
            await self._finish(request, "failed", f"not_compacted:{left}", check)
            return
        await nudge(self._broker, found)
        log.info(
            "awaiting compaction",
            extra={"request_id": request.request_id, "records_left": found.total, "waited_seconds": round(waited)},
        )

    async def recheck_compaction(self) -> None:
        """Re-read the topics for every request awaiting compaction."""
        async with self._lock:
            for request in [r for r in self._state.values() if r.state == "awaiting_compaction"]:
                await self._check_compaction(request)

    async def tick(self) -> None:
        """Re-send overdue commands; fail requests whose owners stayed silent for `max_attempts` commands;
        re-check the requests awaiting compaction."""
        await self.recheck_compaction()
        async with self._lock:
            now = self._clock.now()
            for request in [r for r in self._state.values() if r.state == "executing"]:
                assert request.commanded_at is not None
                if (now - request.commanded_at).total_seconds() < self._settings.command_timeout_seconds:
                    continue
                pending = [o for o in self._owners if o not in request.reports or request.reports[o].status != "done"]
                if request.attempts >= self._settings.max_attempts:
                    reasons = [
                        f"{o}:{request.reports[o].reason or 'failed'}" if o in request.reports else f"{o}:no_report"
                        for o in pending
                    ]
                    await self._finish(request, "failed", "owners_incomplete:" + ",".join(reasons))
                    continue
                await self._command(request)
                await self._write(request.model_copy(update={"attempts": request.attempts + 1, "commanded_at": now}))

    async def _finish(
        self, request: DeletionRequest, status: str, reason: str | None, compaction: CompactionCheck | None = None
    ) -> None:
        owners = [
            owner_receipt(request.reports[o], request.customer_id, request.customer_hash)
            for o in self._owners
            if o in request.reports
        ]
        finished = [r.finished_at for r in request.reports.values()]
        receipt = Receipt(
            request_id=request.request_id,
            workspace_id=request.workspace_id,
            subject="customer" if request.customer_id is not None else "workspace",
            customer_hash=request.customer_hash,
            subject_key_id=self._settings.kek_identity() if request.customer_hash else None,
            origin=request.origin,
            requested_by=request.requested_by,
            requested_at=request.requested_at,
            # Derived from the stored reports, not from "now": a crash before the final record rebuilds
            # exactly the same receipt.
            completed_at=max(finished) if finished else request.commanded_at or request.requested_at,
            status="verified" if status == "verified" else "failed",
            reason=reason,
            rows_before=sum(c.before for o in owners for c in o.counts),
            rows_after=sum(c.after for o in owners for c in o.counts),
            owners=owners,
            compaction=compaction,
        )
        await self._receipts.publish(receipt, request.key)
        # The final record forgets the raw customer id and the owners' raw reports (which name it).
        await self._write(
            request.model_copy(
                update={
                    "state": receipt.status,
                    "reason": reason,
                    "receipt": receipt,
                    "customer_id": None,
                    "reports": {},
                }
            )
        )
        metrics.FINISHED.labels(receipt.subject, receipt.status).inc()
        metrics.SECONDS_TO_FINISH.observe(max(0.0, (self._clock.now() - request.requested_at).total_seconds()))
        log.info(
            "deletion finished", extra={"request_id": request.request_id, "status": receipt.status, "reason": reason}
        )

    async def _write(self, request: DeletionRequest) -> DeletionRequest:
        known = self._state.get(request.key)
        revision = max(request.revision, (known.revision + 1) if known is not None else 1)
        stored = request.model_copy(update={"revision": revision, "updated_at": self._clock.now()})
        await self._requests.publish(stored, stored.key)
        self._state[stored.key] = stored
        # Only after the request is safe under its own key: a crash before this line leaves the stray record,
        # which the next start moves again.
        for stray in sorted(self._strays.pop(stored.key, set())):
            await self._requests.tombstone(stray)
        return stored
