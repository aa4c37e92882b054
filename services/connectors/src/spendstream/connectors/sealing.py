"""The provider's admin key, sealed under the workspace's current data key (AES-256-GCM).

The associated data binds the workspace and the connector, so a sealed key copied onto another connector's
record does not open. Once the workspace's data keys are shredded, no copy of the sealed key opens anywhere.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag

from spendstream.common import crypto
from spendstream.common.tenants import KeyRing


class NoDataKey(Exception):
    """The workspace has no (readable) data key: unknown, or erased."""


def _aad(workspace_id: str, connector_id: str) -> bytes:
    return f"connector|{workspace_id}|{connector_id}".encode()


async def seal(keyring: KeyRing, workspace_id: str, connector_id: str, admin_key: str) -> tuple[int, bytes]:
    """(data-key version, nonce || ciphertext) of the admin key."""
    version = keyring.current_version(workspace_id)
    if version is None:
        await keyring.table.catch_up()
        version = keyring.current_version(workspace_id)
    key = await keyring.data_key(workspace_id, version) if version is not None else None
    if version is None or key is None:
        raise NoDataKey(workspace_id)
    return version, crypto.encrypt(key, admin_key.encode(), _aad(workspace_id, connector_id))


async def unseal(keyring: KeyRing, workspace_id: str, connector_id: str, version: int, sealed: bytes) -> str:
    """The admin key; NoDataKey once the workspace's data key is gone (crypto-shredded)."""
    key = await keyring.data_key(workspace_id, version)
    if key is None:
        raise NoDataKey(workspace_id)
    try:
        return crypto.decrypt(key, sealed, _aad(workspace_id, connector_id)).decode()
    except InvalidTag:
        raise NoDataKey(workspace_id) from None


def hint(admin_key: str) -> str:
    """What is ever shown of the key again: its last four characters."""
    return admin_key[-4:]
