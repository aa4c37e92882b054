"""connectors as an erasure owner: a workspace's deletion command removes its connectors and reports.

Workspace scope, each step idempotent (a repeated or resumed command finds nothing and reports again):
  1. catch the replayed tables up, count the workspace's connector records (each holds a sealed provider admin
     key) and cursors;
  2. tombstone each record on `connectors.config.v1` and `connectors.state.v1`. The sealed keys are
     crypto-shredded already with the workspace's data keys (ingest's part, sealing.py); the tombstones remove
     the unreadable ciphertext too once the topics compact, which retention verifies (shredding.py);
  3. catch up again: the verifications must find no record of the workspace, and no sealed key of it that
     still opens (any left would be tried against the keyring).
A customer scope finds nothing to delete: connectors hold figures per provider project and day, never per end
customer, and the report says so with zero counts. `erasure_owner.serve_erasure` publishes the report before
the command is committed; the registry's lock keeps a pull round from writing a cursor back in between.
"""

from __future__ import annotations

from datetime import UTC, datetime

from spendstream.common.erasure import DeletionCommand, DeletionReport, Owner, StoreCount, Verification
from spendstream.common.topics import CONNECTORS_CONFIG, CONNECTORS_STATE
from spendstream.connectors.registry import Registry
from spendstream.connectors.sealing import NoDataKey, unseal

CONFIG_STORE = f"kafka:{CONNECTORS_CONFIG.name}"
STATE_STORE = f"kafka:{CONNECTORS_STATE.name}"


class ConnectorsErasure:
    """The `ErasureOwner` of the connectors service."""

    owner: Owner = "connectors"

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def erase(self, command: DeletionCommand) -> DeletionReport:
        """Delete (if anything is left) and verify; a repeated command finds zero before and reports again."""
        if command.scope.customer_id is not None:
            return self._report(
                command,
                [StoreCount(store=CONFIG_STORE, before=0, after=0), StoreCount(store=STATE_STORE, before=0, after=0)],
                [
                    Verification(
                        store="connectors",
                        query="per-customer state kept by connectors (none: provider figures are per project and day)",
                        result=0,
                    )
                ],
            )
        ws = command.scope.workspace_id
        registry = self._registry
        async with registry.lock:
            await registry.catch_up()
            configs_before = registry.of_workspace(ws)
            states_before = registry.states_of_workspace(ws)
            for connector in configs_before:
                await registry.delete(connector)
            for state in states_before:  # a cursor whose connector record is gone already
                await registry.delete_state(state.workspace_id, state.connector_id)
            await registry.catch_up()
            configs_after = registry.of_workspace(ws)
            states_after = registry.states_of_workspace(ws)
        still_open = 0
        for connector in configs_after:
            try:
                await unseal(registry.keyring, ws, connector.connector_id, connector.key_version, connector.sealed_key)
                still_open += 1
            except NoDataKey:
                pass
        return self._report(
            command,
            [
                StoreCount(store=CONFIG_STORE, before=len(configs_before), after=len(configs_after)),
                StoreCount(store=STATE_STORE, before=len(states_before), after=len(states_after)),
            ],
            [
                Verification(
                    store=CONFIG_STORE,
                    query="connector records (sealed provider admin keys) of the workspace in the replayed table "
                    "after catch-up",
                    result=len(configs_after),
                ),
                Verification(
                    store=STATE_STORE,
                    query="connector cursors of the workspace in the replayed table after catch-up",
                    result=len(states_after),
                ),
                Verification(
                    store=CONFIG_STORE,
                    query="sealed admin keys of the workspace that still open under its data keys",
                    result=still_open,
                ),
            ],
        )

    def _report(
        self, command: DeletionCommand, counts: list[StoreCount], verifications: list[Verification]
    ) -> DeletionReport:
        clean = all(c.after == 0 for c in counts) and all(v.result == 0 for v in verifications)
        return DeletionReport(
            request_id=command.request_id,
            owner=self.owner,
            scope=command.scope,
            status="done" if clean else "failed",
            counts=counts,
            verifications=verifications,
            reason=None if clean else "leftovers_found",
            finished_at=datetime.now(UTC),
        )
