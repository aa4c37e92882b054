"""Single-use secret tokens for links (invitations, one-time sign-in): random, kept only as their SHA-256.

A token is `secrets.token_urlsafe(32)` (256 bits); Redis holds only its digest, so a copy of Redis (or of its
logs) opens nothing. Taking a token is one GETDEL: of two concurrent uses exactly one succeeds.
"""

from __future__ import annotations

import hashlib
import secrets


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def plausible(token: str) -> bool:
    """A cheap shape check before any lookup: urlsafe base64 of 32 bytes."""
    return len(token) == 43 and all(c.isalnum() or c in "-_" for c in token)
