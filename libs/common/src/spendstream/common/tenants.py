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

from spendstream.common import crypto, datakeys
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
    issued_by: str | None = None  # the issuing member, whose role caps the key (`access.allowed`)


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
        return Principal(
            workspace_id=record.workspace_id, scope=record.scope, key_id=record.key_id, issued_by=record.issued_by
        )


class KeyUnavailable(Exception):
    """A workspace's data key exists but the configured KEK cannot unwrap it: it was wrapped by another KEK.

    An operator's error, not a broken record: with the right KEK the same key unwraps again, so what waits on it
    is retried later, never dropped. Carries ids only."""

    def __init__(self, workspace_id: str, wrapped_by: str) -> None:
        super().__init__(f"the data key of workspace {workspace_id} (KEK {wrapped_by}) cannot be unwrapped")
        self.workspace_id = workspace_id
        self.wrapped_by = wrapped_by


class KeyRing:
    """Data-key versions of every workspace, replayed from the data-keys topic; plaintext keys unwrapped on first
    use and cached.

    A tombstone on the topic (crypto-shredding, or a retired version's removal) drops the key from the cache at
    once. Whole-set records of the older layout are read beside per-version records.
    """

    def __init__(self, settings: BaseServiceSettings) -> None:
        self._kek = settings.kek_bytes()
        self._cache: dict[tuple[str, int], bytes] = {}
        self._versions: dict[str, dict[int, crypto.DataKeyVersion]] = {}  # from per-version records
        self._legacy: dict[str, dict[int, crypto.DataKeyVersion]] = {}  # from whole-set records
        self._current: dict[str, int] = {}
        self.table: CompactedTable[crypto.DataKeyRecord] = CompactedTable(settings, DATA_KEYS, on_change=self._apply)

    def _apply(self, key: str, value: crypto.DataKeyRecord | None) -> None:
        workspace_id, version = datakeys.parse_record_key(key)
        if version is None:
            dropped = self._legacy.pop(workspace_id, {})
            if isinstance(value, crypto.WrappedKeySet) and value.workspace_id == workspace_id:
                self._legacy[workspace_id] = {v.version: v for v in crypto.versions_of(value)}
            for old in dropped:
                self._cache.pop((workspace_id, old), None)
        else:
            versions = self._versions.setdefault(workspace_id, {})
            versions.pop(version, None)
            # A record only counts under its own key: its workspace and version are in the AAD it unwraps with.
            if isinstance(value, crypto.DataKeyVersion) and (value.workspace_id, value.version) == (
                workspace_id,
                version,
            ):
                versions[version] = value
            if not versions:
                del self._versions[workspace_id]
            self._cache.pop((workspace_id, version), None)
        self._set_current(workspace_id, version)

    def _set_current(self, workspace_id: str, changed: int | None) -> None:
        current = self._current.get(workspace_id)
        if changed is not None and current is not None and changed != current:
            if changed > current and changed in self._versions.get(workspace_id, {}):
                self._current[workspace_id] = changed
            return  # an older version came or went: the current one stays
        known = [*self._versions.get(workspace_id, {}), *self._legacy.get(workspace_id, {})]
        if known:
            self._current[workspace_id] = max(known)
        else:
            self._current.pop(workspace_id, None)

    def current_version(self, workspace_id: str) -> int | None:
        """The version new envelopes are sealed with; None when the workspace has no data key."""
        return self._current.get(workspace_id)

    def versions(self, workspace_id: str) -> list[crypto.DataKeyVersion]:
        """Every readable version of the workspace, oldest first."""
        merged = {**self._legacy.get(workspace_id, {}), **self._versions.get(workspace_id, {})}
        return [merged[v] for v in sorted(merged)]

    def workspaces(self) -> list[str]:
        """Every workspace that has a data key."""
        return list(self._current)

    def records(self, workspace_id: str) -> dict[str, tuple[int, ...]]:
        """Every record on the data-keys topic holding the workspace's data keys: its key and the versions in it."""
        held: dict[str, tuple[int, ...]] = {
            datakeys.record_key(workspace_id, v): (v,) for v in sorted(self._versions.get(workspace_id, {}))
        }
        if workspace_id in self._legacy:
            held[workspace_id] = tuple(sorted(self._legacy[workspace_id]))
        return held

    def _record(self, workspace_id: str, version: int) -> crypto.DataKeyVersion | None:
        record = self._versions.get(workspace_id, {}).get(version)
        return record if record is not None else self._legacy.get(workspace_id, {}).get(version)

    async def data_key(self, workspace_id: str, version: int) -> bytes | None:
        """The data key, or None when it does not exist (never created, retired and removed, or shredded); raises
        KeyUnavailable when the configured KEK cannot unwrap it."""
        cached = self._cache.get((workspace_id, version))
        if cached is not None:
            return cached
        record = self._record(workspace_id, version)
        if record is None:
            # The key may be newer than our replay position: ingest writes it before any envelope uses it.
            await self.table.catch_up()
            record = self._record(workspace_id, version)
        if record is None:
            return None
        try:
            key = crypto.unwrap_version(record, self._kek)
        except InvalidTag:
            raise KeyUnavailable(workspace_id, record.kek_id) from None
        self._cache[(workspace_id, version)] = key
        return key
