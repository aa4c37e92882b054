"""The second factor: TOTP (RFC 6238, via pyotp) and single-use backup codes.

The TOTP secret is stored only sealed (AES-256-GCM under a key derived from the KEK for this purpose alone, the
person id as associated data, so a sealed secret copied onto another person does not open). A code is accepted
within one 30-second step either side of now, and once: the step of the last accepted code is kept in Redis and
a code of that step or an earlier one is refused, so a code seen over a shoulder or replayed is worth nothing.
Backup codes (10, shown once at enrolment) are stored as keyed hashes (HMAC-SHA-256 under a KEK-derived key:
they are random, 50 bits each, so a slow hash adds nothing); each opens one sign-in and is then gone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from typing import Any

import pyotp
import redis.asyncio as aioredis

from spendstream.common import crypto
from spendstream.people.directory import Directory, Person
from spendstream.people.settings import PeopleSettings

STEP_SECONDS = 30
DIGITS = 6
BACKUP_CODES = 10
PENDING_SECONDS = 600  # an enrolment not confirmed within this is forgotten
CODE_PATTERN = re.compile(r"^[0-9]{6}$")
_BACKUP_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper without doubt
_BACKUP_CHARS = 10

# KEYS: the person's last accepted step. ARGV: this step, ttl ms. 1 when accepted (later than the last one).
_ACCEPT_STEP = """
local last = redis.call('GET', KEYS[1])
if last and tonumber(last) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


def new_backup_code() -> str:
    raw = "".join(secrets.choice(_BACKUP_ALPHABET) for _ in range(_BACKUP_CHARS))
    return f"{raw[:5]}-{raw[5:]}"


def _normal_backup(code: str) -> str:
    return code.strip().lower().replace("-", "").replace(" ", "")


class SecondFactor:
    """Sealing, checking and spending a person's TOTP secret and backup codes."""

    def __init__(self, settings: PeopleSettings, redis: aioredis.Redis, directory: Directory) -> None:
        self._redis = redis
        self._directory = directory
        self._prefix = f"{settings.redis_prefix}people:totp"
        self._issuer = settings.totp_issuer
        kek = settings.kek_bytes()
        self._seal_key = crypto.derived_key(kek, "totp-secret")
        self._backup_key = crypto.derived_key(kek, "backup-code")

    # -- the secret ------------------------------------------------------------------------------------------

    @staticmethod
    def new_secret() -> str:
        """160 random bits in base32, what authenticator apps take (RFC 4226 recommends 160)."""
        return pyotp.random_base32(32)

    def seal(self, person_id: str, secret: str) -> str:
        return base64.b64encode(crypto.encrypt(self._seal_key, secret.encode(), f"totp|{person_id}".encode())).decode()

    def unseal(self, person_id: str, sealed: str) -> str:
        return crypto.decrypt(self._seal_key, base64.b64decode(sealed), f"totp|{person_id}".encode()).decode()

    def provisioning_uri(self, secret: str, email: str) -> str:
        """The otpauth:// URI an authenticator app reads from a QR code."""
        return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
            name=email, issuer_name=self._issuer
        )

    async def accept_code(self, person_id: str, secret: str, code: str, now: float | None = None) -> bool:
        """Whether `code` is the TOTP of a step within one of now and later than the last code accepted."""
        if not CODE_PATTERN.fullmatch(code):
            return False
        totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
        current = int((time.time() if now is None else now) // STEP_SECONDS)
        matched = None
        for step in (current - 1, current, current + 1):
            # Every candidate is compared (no early exit): the time taken does not tell which step matched.
            if hmac.compare_digest(totp.generate_otp(step), code):
                matched = step
        if matched is None:
            return False
        result: Any = await self._redis.eval(
            _ACCEPT_STEP, 1, f"{self._prefix}:last-step:{person_id}", str(matched), str(4 * STEP_SECONDS * 1000)
        )
        return int(result) == 1

    # -- enrolment -------------------------------------------------------------------------------------------

    async def begin_enrolment(self, person_id: str) -> str:
        """A new secret, kept sealed and pending until a code made from it is confirmed."""
        secret = self.new_secret()
        await self._redis.set(
            f"{self._prefix}:pending:{person_id}", self.seal(person_id, secret), px=PENDING_SECONDS * 1000
        )
        return secret

    async def pending_secret(self, person_id: str) -> str | None:
        sealed = await self._redis.get(f"{self._prefix}:pending:{person_id}")
        if sealed is None:
            return None
        return self.unseal(person_id, sealed.decode() if isinstance(sealed, bytes) else str(sealed))

    async def finish_enrolment(self, person: Person, secret: str) -> tuple[Person, list[str]]:
        """Store the confirmed secret and ten new backup codes; the codes in clear, to be shown this once."""
        codes = [new_backup_code() for _ in range(BACKUP_CODES)]
        updated = await self._directory.save_person(
            person.model_copy(
                update={
                    "totp_secret_sealed": self.seal(person.person_id, secret),
                    "backup_code_hashes": [self.backup_hash(person.person_id, c) for c in codes],
                }
            )
        )
        await self._redis.delete(f"{self._prefix}:pending:{person.person_id}")
        return updated, codes

    async def disable(self, person: Person) -> Person:
        """No second factor any more: the secret and every backup code are gone."""
        return await self._directory.save_person(
            person.model_copy(update={"totp_secret_sealed": None, "backup_code_hashes": []})
        )

    # -- checking at sign-in ---------------------------------------------------------------------------------

    async def accept_totp(self, person: Person, code: str) -> bool:
        if person.totp_secret_sealed is None:
            return False
        return await self.accept_code(person.person_id, self.unseal(person.person_id, person.totp_secret_sealed), code)

    def backup_hash(self, person_id: str, code: str) -> str:
        message = f"{person_id}\x00{_normal_backup(code)}".encode()
        return hmac.new(self._backup_key, message, hashlib.sha256).hexdigest()

    async def spend_backup_code(self, person: Person, code: str) -> bool:
        """Whether `code` is one of the person's unused backup codes; if so it is used up, here and for good."""
        if not code or len(code) > 64:
            return False
        digest = self.backup_hash(person.person_id, code)
        if not any(hmac.compare_digest(digest, stored) for stored in person.backup_code_hashes):
            return False
        # SET NX decides between two sign-ins racing with one code; the directory then forgets the code.
        if not await self._redis.set(f"{self._prefix}:backup-used:{digest}", "1", nx=True, px=86_400_000):
            return False
        current = await self._directory.person(person.person_id)
        if current is None or digest not in current.backup_code_hashes:
            return False
        await self._directory.save_person(
            current.model_copy(update={"backup_code_hashes": [h for h in current.backup_code_hashes if h != digest]})
        )
        return True
