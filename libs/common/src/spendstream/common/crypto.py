"""Envelope encryption: AES-256-GCM data keys per workspace (one per version), wrapped by the key-encryption key
(KEK).

Each version is one record on the data-keys topic (`DataKeyVersion`); a workspace written before that layout
holds all its versions in one `WrappedKeySet` record, which stays readable. Destroying a workspace's key records
(tombstones on the data-keys topic) makes every envelope encrypted under them unreadable wherever a copy
survives: Kafka segments, backups, mirrors (crypto-shredding).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, TypeAdapter

NONCE_BYTES = 12


class WrappedKey(BaseModel):
    # Bytes travel as base64 in JSON; in Python they stay raw (Base64Bytes would decode raw input too).
    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    version: int
    wrapped: bytes  # nonce || AESGCM(KEK).encrypt(dek), AAD = kek_id|workspace|version
    created_at: datetime


class WrappedKeySet(BaseModel):
    """Every data-key version of one workspace in one record: the layout before `DataKeyVersion`, still read."""

    model_config = ConfigDict(frozen=True)

    workspace_id: str
    kek_id: str
    current: int
    keys: tuple[WrappedKey, ...]


class DataKeyVersion(BaseModel):
    """One data-key version of one workspace: one record on the data-keys topic, of a constant size."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    workspace_id: str
    kek_id: str
    version: int
    wrapped: bytes  # nonce || AESGCM(KEK).encrypt(dek), AAD = kek_id|workspace|version (as in a WrappedKeySet)
    created_at: datetime


DataKeyRecord = DataKeyVersion | WrappedKeySet
_RECORD: TypeAdapter[DataKeyRecord] = TypeAdapter(DataKeyRecord)


class DataKeyCodec:
    """The values of the data-keys topic: a `DataKeyVersion`, or a `WrappedKeySet` written in the older layout."""

    def encode(self, record: DataKeyRecord) -> bytes:
        return record.model_dump_json().encode()

    def decode(self, value: bytes) -> DataKeyRecord:
        return _RECORD.validate_json(value)


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


def new_version(workspace_id: str, version: int, kek: bytes, kek_id: str) -> DataKeyVersion:
    """A fresh random data key as `version` of the workspace, wrapped by the KEK."""
    wrapped = _wrap(kek, kek_id, workspace_id, version, AESGCM.generate_key(bit_length=256))
    return DataKeyVersion(
        workspace_id=workspace_id,
        kek_id=kek_id,
        version=version,
        wrapped=wrapped.wrapped,
        created_at=wrapped.created_at,
    )


def versions_of(key_set: WrappedKeySet) -> list[DataKeyVersion]:
    """The versions a whole-set record holds, each as its own record (same wrapped bytes, same AAD)."""
    return [
        DataKeyVersion(
            workspace_id=key_set.workspace_id,
            kek_id=key_set.kek_id,
            version=k.version,
            wrapped=k.wrapped,
            created_at=k.created_at,
        )
        for k in key_set.keys
    ]


def unwrap_version(record: DataKeyVersion, kek: bytes) -> bytes:
    """The plaintext data key of one version; cryptography's InvalidTag when the KEK or the record is wrong."""
    return decrypt(kek, record.wrapped, _aad(record.kek_id, record.workspace_id, str(record.version)))


def unwrap(key_set: WrappedKeySet, version: int, kek: bytes) -> bytes:
    """The plaintext data key of `version`; KeyError when that version does not exist."""
    for wrapped in key_set.keys:
        if wrapped.version == version:
            return decrypt(kek, wrapped.wrapped, _aad(key_set.kek_id, key_set.workspace_id, str(version)))
    raise KeyError(version)


def derived_key(kek: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose (`audit-chain`, `client-address`), derived from the KEK by HKDF-SHA256:
    a secret no record carries, that rotates with the KEK and that nobody without the KEK can recompute."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"spendstream/{purpose}".encode()).derive(kek)
