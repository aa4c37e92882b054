"""The receipt token of a workspace erasure: the requester's own credential for its receipt.

A workspace erasure deletes the keys and sessions that asked for it, so `GET /v1/deletions/{id}` can no longer
authenticate them. The answer to the request carries a random token once; the request record keeps only its
SHA-256 (the token holds 256 random bits, so the digest needs no key, and none that could rotate away from it),
and `GET /v1/deletions/{id}/receipt` with the token in `X-Receipt-Token` reads the request and its receipt.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

from spendstream.common.erasure import DeletionRequest

HEADER = "X-Receipt-Token"


def new_token() -> tuple[str, str]:
    """A fresh token (shown once) and the digest the request record keeps."""
    token = secrets.token_urlsafe(32)
    return token, digest(token)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def opened_by(candidates: Iterable[DeletionRequest], token: str) -> DeletionRequest | None:
    """The request among `candidates` whose receipt token is `token`, else None.

    Every digest is compared in constant time, and at least one comparison runs when no request has that id, so
    neither the time nor the answer tells an unknown request from a wrong token."""
    given = digest(token)
    found: DeletionRequest | None = None
    compared = False
    for request in candidates:
        if request.receipt_token_hash is None:
            continue
        compared = True
        if hmac.compare_digest(given, request.receipt_token_hash):
            found = request
    if not compared:
        hmac.compare_digest(given, _NOTHING)
    return found


_NOTHING = "-" * 64  # no SHA-256 hex digest equals it
