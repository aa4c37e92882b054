"""The password policy and argon2id hashing: explicit parameters, a rehash when they change, a dummy check for
a person without a password, and refusals that say why without repeating the password."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, extract_parameters

from spendstream.people.passwords import MAX_LENGTH, MIN_LENGTH, Passwords, check_policy, is_common
from spendstream.people.settings import PeopleSettings


def settings(time_cost: int = 1, memory_kib: int = 8 * 1024, parallelism: int = 1) -> PeopleSettings:
    return PeopleSettings(
        kek="A" * 43 + "=",
        password_time_cost=time_cost,
        password_memory_kib=memory_kib,
        password_parallelism=parallelism,
    )


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("a" * (MIN_LENGTH - 1), "too_short"),
        ("Zq8!" * 33, "too_long"),
        ("ada.lovelace@example.com", "contains_email"),
        ("ADA.LOVELACE", "contains_email"),
        ("ada.lovelace2024", "contains_email"),
        ("password1234", "too_common"),
        ("Password1234!", "too_common"),
        ("qwertyuiop123", "too_common"),
        ("123456789012", "too_common"),
        ("20241231202412", "too_common"),
        ("aaaaaaaaaaaaaaaa", "too_common"),
        ("abababababab", "too_common"),
        ("letmeinletmein", "too_common"),
        ("Spendstream2026", "too_common"),
    ],
)
def test_a_weak_password_is_refused_with_a_reason_that_does_not_quote_it(password: str, code: str) -> None:
    violation = check_policy(password, "Ada.Lovelace@example.com")
    assert violation is not None and violation.code == code
    assert password not in violation.message and password.lower() not in violation.message.lower()


@pytest.mark.parametrize(
    "password",
    [
        "correct-Horse-staple-42",
        "x" * 4 + "Kj8#mQ2$vL9p",
        "é" * 6 + "日本語パスワード",
        "z" * (MAX_LENGTH - 4) + "Q1!w",
    ],
)
def test_a_long_uncommon_password_passes(password: str) -> None:
    assert check_policy(password, "ada@example.com") is None


def test_common_detection_ignores_case_and_trailing_digits() -> None:
    assert is_common("DRAGON!!2024") and is_common("monkeymonkey1") and not is_common("dragon-fruit-salad")


async def test_hashes_are_argon2id_with_the_configured_parameters() -> None:
    passwords = Passwords(settings(time_cost=2, memory_kib=16 * 1024, parallelism=2))
    stored = await passwords.hash("correct-Horse-staple-42")
    parameters = extract_parameters(stored)
    assert stored.startswith("$argon2id$")
    assert (parameters.time_cost, parameters.memory_cost, parameters.parallelism) == (2, 16 * 1024, 2)
    assert await passwords.verify(stored, "correct-Horse-staple-42")
    assert not await passwords.verify(stored, "correct-Horse-staple-43")
    assert not passwords.needs_rehash(stored)
    assert passwords.needs_rehash(PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash("x"))
    assert passwords.needs_rehash("not a hash")


async def test_no_stored_hash_spends_one_verification_and_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    passwords = Passwords(settings())
    calls: list[str] = []
    real = PasswordHasher.verify

    def counting(self: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        calls.append("verify")
        return real(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    assert not await passwords.verify(None, "correct-Horse-staple-42")
    assert not await passwords.verify("", "correct-Horse-staple-42")
    assert calls == ["verify", "verify"]
