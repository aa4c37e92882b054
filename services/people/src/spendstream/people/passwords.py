"""Passwords: argon2id hashes with explicit parameters, and the policy a new password must meet.

A stored hash carries its own parameters; one made with parameters other than the configured ones still
verifies and is re-made at the next successful sign-in (`needs_rehash`). An unknown e-mail (or a person without a
password, signed up by single sign-on) is checked against a dummy hash made at start with the same parameters,
so that every failed sign-in spends the same work. The policy's messages say what is wrong, never the password.
"""

from __future__ import annotations

import asyncio
import secrets
import unicodedata
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from spendstream.people.settings import PeopleSettings

MIN_LENGTH = 12
MAX_LENGTH = 128  # argon2 takes any length; the bound keeps a request's work and body small

# Passwords and stems of the breach corpora's most common entries that a 12-character minimum still admits
# ("password1234", "qwertyuiop123"): refused when the password, lower-cased and without trailing digits and
# punctuation, is one of them or a repetition of one.
_COMMON_STEMS = frozenset(
    {
        "password",
        "passw0rd",
        "p@ssw0rd",
        "p@ssword",
        "qwerty",
        "qwertyuiop",
        "qwertyuiopas",
        "asdfghjkl",
        "zxcvbnm",
        "1q2w3e4r5t",
        "1q2w3e4r5t6y",
        "q1w2e3r4t5y6",
        "qazwsxedc",
        "1qaz2wsx3edc",
        "abc",
        "abcdef",
        "abcdefghijkl",
        "letmein",
        "welcome",
        "iloveyou",
        "admin",
        "administrator",
        "changeme",
        "default",
        "monkey",
        "dragon",
        "football",
        "baseball",
        "basketball",
        "sunshine",
        "princess",
        "trustno1",
        "superman",
        "batman",
        "starwars",
        "whatever",
        "secret",
        "master",
        "shadow",
        "michael",
        "jennifer",
        "charlie",
        "freedom",
        "login",
        "hello",
        "helloworld",
        "spendstream",
        "correcthorsebatterystaple",
    }
)
_COMMON_WHOLE = frozenset(
    {
        "123456789012",
        "1234567890123",
        "12345678901234",
        "123123123123",
        "000000000000",
        "111111111111",
        "987654321098",
        "098765432109",
        "123456789abc",
        "abc123456789",
        "qwerty123456",
        "password1234",
        "iloveyou1234",
        "1234qwerasdf",
        "1234qwerasdfzxcv",
    }
)
_TRAILING = "0123456789!@#$%^&*()-_=+.,;:?~ "


@dataclass(frozen=True)
class PolicyViolation:
    """Why a password is refused: a stable code and a message for people; neither quotes the password."""

    code: str
    message: str


def _normalized(password: str) -> str:
    return unicodedata.normalize("NFKC", password).casefold()


def _is_repetition(text: str, unit: str) -> bool:
    return bool(unit) and len(text) % len(unit) == 0 and text == unit * (len(text) // len(unit))


def is_common(password: str) -> bool:
    """Whether the password is a well-known one, or a well-known stem with digits or punctuation around it."""
    text = _normalized(password)
    if text in _COMMON_WHOLE:
        return True
    stem = text.rstrip(_TRAILING).lstrip(_TRAILING)
    if not stem:
        return True  # digits and punctuation only: a date, a PIN, a keyboard row
    if len(set(text)) <= 2:
        return True  # "aaaaaaaaaaaa", "abababababab"
    return any(stem == common or _is_repetition(stem, common) for common in _COMMON_STEMS)


def check_policy(password: str, email: str = "") -> PolicyViolation | None:
    """None when the password may be used by the person with this e-mail, else why not."""
    if len(password) < MIN_LENGTH:
        return PolicyViolation("too_short", f"the password must be at least {MIN_LENGTH} characters long")
    if len(password) > MAX_LENGTH:
        return PolicyViolation("too_long", f"the password must be at most {MAX_LENGTH} characters long")
    if email:
        text, address = _normalized(password), _normalized(email)
        local = address.split("@", 1)[0]
        if text in (address, local) or (len(local) >= 4 and text.rstrip(_TRAILING) == local):
            return PolicyViolation("contains_email", "the password must not be the e-mail address or its name part")
    if is_common(password):
        return PolicyViolation("too_common", "the password is one of the most commonly used ones; choose another")
    return None


class Passwords:
    """argon2id hashing and verification with the configured parameters; the slow work runs off the event loop."""

    def __init__(self, settings: PeopleSettings) -> None:
        self.hasher = PasswordHasher(
            time_cost=settings.password_time_cost,
            memory_cost=settings.password_memory_kib,
            parallelism=settings.password_parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        # Made once with the same parameters: an unknown e-mail's check costs what a known one's does.
        self._dummy = self.hasher.hash(secrets.token_urlsafe(24))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches `stored`; with no stored hash, a dummy one is checked and False returned."""
        return await asyncio.to_thread(self._verify, stored, password)

    def _verify(self, stored: str | None, password: str) -> bool:
        target = stored or self._dummy
        try:
            matched = self.hasher.verify(target, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return matched and stored is not None

    def needs_rehash(self, stored: str) -> bool:
        """Whether the hash was made with other parameters than the configured ones."""
        try:
            return self.hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True
