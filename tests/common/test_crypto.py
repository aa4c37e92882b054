"""Envelope encryption: data keys wrapped by the KEK, one record per version (and the older whole-set
records), and what a wrong key or tenant does."""

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


def test_each_version_is_its_own_key_bound_to_its_workspace_and_version() -> None:
    kek = os.urandom(32)
    first, second = crypto.new_version("ws_a", 1, kek, "kek-1"), crypto.new_version("ws_a", 2, kek, "kek-1")
    assert crypto.unwrap_version(first, kek) != crypto.unwrap_version(second, kek)
    for forged in (first.model_copy(update={"version": 2}), first.model_copy(update={"workspace_id": "ws_b"})):
        with pytest.raises(InvalidTag):
            crypto.unwrap_version(forged, kek)
    with pytest.raises(InvalidTag):
        crypto.unwrap_version(first, os.urandom(32))


def test_a_version_record_has_the_same_size_whatever_its_version() -> None:
    kek = os.urandom(32)
    sizes = {len(crypto.new_version("ws_a", v, kek, "kek-1").model_dump_json()) for v in (1, 2, 10)}
    assert max(sizes) - min(sizes) <= 2  # the digits of the version number


def test_the_topic_codec_reads_both_layouts_and_a_whole_set_splits_into_the_same_keys() -> None:
    kek = os.urandom(32)
    codec = crypto.DataKeyCodec()
    version = crypto.new_version("ws_a", 3, kek, "kek-1")
    assert codec.decode(codec.encode(version)) == version
    key_set = crypto.new_key_set("ws_a", kek, "kek-1")
    decoded = codec.decode(key_set.model_dump_json().encode())
    assert isinstance(decoded, crypto.WrappedKeySet)
    [split] = crypto.versions_of(decoded)
    assert (split.workspace_id, split.version) == ("ws_a", 1)
    assert crypto.unwrap_version(split, kek) == crypto.unwrap(key_set, 1, kek)
    with pytest.raises(ValueError):
        codec.decode(b'{"workspace_id": "ws_a"}')


def test_every_encryption_uses_a_fresh_nonce() -> None:
    key = os.urandom(32)
    sealed = {crypto.encrypt(key, b"same plaintext", b"aad") for _ in range(50)}
    assert len(sealed) == 50
