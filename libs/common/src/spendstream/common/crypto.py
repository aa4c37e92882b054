"""Envelope encryption: one AES-256-GCM data key per workspace, wrapped by the key-encryption key (KEK).

Destroying a workspace's key set (a tombstone on the data-keys topic) makes every envelope encrypted under it
unreadable wherever a copy survives: Kafka segments, backups, mirrors (crypto-shredding).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict

NONCE_BYTES = 12


class WrappedKey(BaseModel):
    # Bytes travel as base64 in JSON; in Python they stay raw (Base64Bytes would decode raw input too).
    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    version: int
    wrapped: bytes  # nonce || AESGCM(KEK).encrypt(dek), AAD = kek_id|workspace|version
    created_at: datetime


class WrappedKeySet(BaseModel):
    """Every data-key version of one workspace. New writes use `current`; old versions still decrypt."""

    model_config = ConfigDict(frozen=True)

    workspace_id: str
    kek_id: str
    current: int
    keys: tuple[WrappedKey, ...]


def _aad(*parts: str) -> bytes:
    return "|".join(parts).encode()


def encrypt(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """nonce || ciphertext+tag, with a fresh random 96-bit nonce (keys rotate well before 2^32 uses)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def decrypt(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Raises cryptography's InvalidTag when the key, the AAD or the bytes are wrong."""
    return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)


def _wrap(kek: bytes, kek_id: str, workspace_id: str, version: int, dek: bytes) -> WrappedKey:
    sealed = encrypt(kek, dek, _aad(kek_id, workspace_id, str(version)))
    return WrappedKey(version=version, wrapped=sealed, created_at=datetime.now(UTC))


def new_key_set(workspace_id: str, kek: bytes, kek_id: str) -> WrappedKeySet:
    dek = AESGCM.generate_key(bit_length=256)
    return WrappedKeySet(
        workspace_id=workspace_id, kek_id=kek_id, current=1, keys=(_wrap(kek, kek_id, workspace_id, 1, dek),)
    )


def rotate(key_set: WrappedKeySet, kek: bytes) -> WrappedKeySet:
    """Add a new current version; earlier versions stay until the data they protect has aged out."""
    version = key_set.current + 1
    dek = AESGCM.generate_key(bit_length=256)
    new = _wrap(kek, key_set.kek_id, key_set.workspace_id, version, dek)
    return key_set.model_copy(update={"current": version, "keys": (*key_set.keys, new)})


def unwrap(key_set: WrappedKeySet, version: int, kek: bytes) -> bytes:
    """The plaintext data key of `version`; KeyError when that version does not exist."""
    for wrapped in key_set.keys:
        if wrapped.version == version:
            return decrypt(kek, wrapped.wrapped, _aad(key_set.kek_id, key_set.workspace_id, str(version)))
    raise KeyError(version)
