"""Envelope encryption: data keys wrapped by the KEK, rotation, and what a wrong key or tenant does."""

from __future__ import annotations

import os

import pytest
from cryptography.exceptions import InvalidTag

from spendstream.common import crypto


def test_a_wrapped_key_set_round_trips_through_json_and_unwraps_with_the_kek() -> None:
    kek = os.urandom(32)
    key_set = crypto.new_key_set("ws_a", kek, "kek-1")
    restored = crypto.WrappedKeySet.model_validate_json(key_set.model_dump_json())
    assert crypto.unwrap(restored, 1, kek) == crypto.unwrap(key_set, 1, kek)
    assert len(crypto.unwrap(restored, 1, kek)) == 32


def test_the_data_key_never_appears_in_the_serialised_key_set() -> None:
    kek = os.urandom(32)
    key_set = crypto.new_key_set("ws_a", kek, "kek-1")
    dek = crypto.unwrap(key_set, 1, kek)
    assert dek not in key_set.model_dump_json().encode()
    assert dek.hex() not in key_set.model_dump_json()


def test_a_wrong_kek_cannot_unwrap() -> None:
    key_set = crypto.new_key_set("ws_a", os.urandom(32), "kek-1")
    with pytest.raises(InvalidTag):
        crypto.unwrap(key_set, 1, os.urandom(32))


def test_a_key_set_moved_to_another_workspace_cannot_unwrap() -> None:
    kek = os.urandom(32)
    key_set = crypto.new_key_set("ws_a", kek, "kek-1")
    forged = key_set.model_copy(update={"workspace_id": "ws_b"})
    with pytest.raises(InvalidTag):
        crypto.unwrap(forged, 1, kek)


def test_rotation_adds_a_current_version_and_old_versions_still_unwrap() -> None:
    kek = os.urandom(32)
    first = crypto.new_key_set("ws_a", kek, "kek-1")
    rotated = crypto.rotate(first, kek)
    assert rotated.current == 2
    assert crypto.unwrap(rotated, 1, kek) == crypto.unwrap(first, 1, kek)
    assert crypto.unwrap(rotated, 2, kek) != crypto.unwrap(rotated, 1, kek)
    with pytest.raises(KeyError):
        crypto.unwrap(rotated, 3, kek)


def test_every_encryption_uses_a_fresh_nonce() -> None:
    key = os.urandom(32)
    sealed = {crypto.encrypt(key, b"same plaintext", b"aad") for _ in range(50)}
    assert len(sealed) == 50
