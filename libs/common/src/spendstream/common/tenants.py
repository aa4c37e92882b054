"""Tenants as every service sees them: workspace and API-key records, and the data-key ring.

ingest owns and writes these records (compacted topics are the system of record); other services only
replay them, which is how they authenticate keys and decrypt envelopes without sharing a database.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from pydantic import BaseModel, ConfigDict

from spendstream.common import crypto
from spendstream.common.auth_brake import AuthBrake
from spendstream.common.kafka import CompactedTable
from spendstream.common.records import ApiKeyRecord, KeyScope
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import API_KEYS, DATA_KEYS

Scope = KeyScope
KEY_PREFIX = "ssk"


def generate_key(scope: Scope) -> str:
    """A new random key (256 bits), shown to its owner once."""
    return f"{KEY_PREFIX}_{scope}_{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True)

    workspace_id: str
    scope: Scope
    key_id: str


class KeyDirectory:
    """Authenticates API keys against the replayed `ingest.apikeys.v1` table."""

    def __init__(self, settings: BaseServiceSettings) -> None:
        self.table: CompactedTable[ApiKeyRecord] = CompactedTable(settings, API_KEYS)
        self.brake = AuthBrake(settings)  # consulted by the HTTP key checks, which know the client's address

    def authenticate(self, key: str) -> Principal | None:
        """The key's principal, or None for an unknown or revoked key."""
        digest = hash_key(key)
        record = self.table.get(digest)
        # The dict lookup is on the hash, and the hash comparison is constant-time: timing reveals nothing.
        if record is None or record.revoked_at is not None or not hmac.compare_digest(record.key_hash, digest):
            return None
        return Principal(workspace_id=record.workspace_id, scope=record.scope, key_id=record.key_id)


class KeyUnavailable(Exception):
    """A workspace's data key exists but the configured KEK cannot unwrap it: it was wrapped by another KEK.

    An operator's error, not a broken record: with the right KEK the same key unwraps again, so what waits on it
    is retried later, never dropped. Carries ids only."""

    def __init__(self, workspace_id: str, wrapped_by: str) -> None:
        super().__init__(f"the data key of workspace {workspace_id} (KEK {wrapped_by}) cannot be unwrapped")
        self.workspace_id = workspace_id
        self.wrapped_by = wrapped_by


class KeyRing:
    """Plaintext data keys of every workspace, unwrapped on first use from the replayed data-keys topic.

    A tombstone on the topic (crypto-shredding) drops the workspace's keys from this cache at once.
    """

    def __init__(self, settings: BaseServiceSettings) -> None:
        self._kek = settings.kek_bytes()
        self._cache: dict[tuple[str, int], bytes] = {}
        self.table: CompactedTable[crypto.WrappedKeySet] = CompactedTable(settings, DATA_KEYS, on_change=self._forget)

    def _forget(self, workspace_id: str, _: crypto.WrappedKeySet | None) -> None:
        for cached in [k for k in self._cache if k[0] == workspace_id]:
            del self._cache[cached]

    def key_set(self, workspace_id: str) -> crypto.WrappedKeySet | None:
        return self.table.get(workspace_id)

    async def data_key(self, workspace_id: str, version: int) -> bytes | None:
        """The data key, or None when it does not exist (never created, or shredded); raises KeyUnavailable when
        the configured KEK cannot unwrap it."""
        cached = self._cache.get((workspace_id, version))
        if cached is not None:
            return cached
        key_set = self.table.get(workspace_id)
        if key_set is None or version > key_set.current:
            # The key may be newer than our replay position: ingest writes it before any envelope uses it.
            await self.table.catch_up()
            key_set = self.table.get(workspace_id)
        if key_set is None:
            return None
        try:
            key = crypto.unwrap(key_set, version, self._kek)
        except KeyError:
            return None
        except InvalidTag:
            raise KeyUnavailable(workspace_id, key_set.kek_id) from None
        self._cache[(workspace_id, version)] = key
        return key
