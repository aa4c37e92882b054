"""Receipts on `audit.receipts.v1`: what was asked, by which key id, when, what each store held before and
after, and the verification queries with their results. No personal data and no event content.

An end customer's id is personal-ish (an opaque id the tenant can map to a person), so a receipt carries
`customer_hash` instead: HMAC-SHA256 keyed by a key derived from the KEK, over `workspace_id|customer_id`.
Keyed, because a plain hash of a short id can be confirmed by anyone who guesses the id; the operator, who
holds the KEK, can still answer "was customer X of workspace W erased?" by recomputing it
(`spendstream deletion subject-hash`). Bound to the workspace, so the same id in two tenants never links.
"""

from __future__ import annotations

import hashlib
import hmac

from spendstream.common.erasure import DeletionReport, OwnerReceipt

_SUBJECT_KEY_LABEL = b"spendstream/receipt-subject/v1"


def subject_hash(kek: bytes, workspace_id: str, customer_id: str) -> str:
    """The receipt's stand-in for a customer id; stable for one KEK, meaningless without it."""
    key = hmac.new(kek, _SUBJECT_KEY_LABEL, hashlib.sha256).digest()
    digest = hmac.new(key, f"{workspace_id}|{customer_id}".encode(), hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest}"


def _scrub(text: str, customer_id: str | None, replacement: str | None) -> str:
    # Defence in depth: an owner's verification query should use placeholders, but if one inlined the raw
    # customer id, the permanent receipt must still not hold it.
    if customer_id and replacement and customer_id in text:
        return text.replace(customer_id, replacement)
    return text


def owner_receipt(report: DeletionReport, customer_id: str | None, customer_hash: str | None) -> OwnerReceipt:
    verifications = [
        v.model_copy(
            update={
                "query": _scrub(v.query, customer_id, customer_hash),
                "store": _scrub(v.store, customer_id, customer_hash),
            }
        )
        for v in report.verifications
    ]
    counts = [c.model_copy(update={"store": _scrub(c.store, customer_id, customer_hash)}) for c in report.counts]
    return OwnerReceipt(
        owner=report.owner,
        status=report.status,
        counts=counts,
        verifications=verifications,
        reason=report.reason,
        finished_at=report.finished_at,
    )


def residue(report: DeletionReport) -> list[str]:
    """The stores of a `done` report where something is left (a count after, or a verification, above 0)."""
    left = [c.store for c in report.counts if c.after != 0]
    left += [v.store for v in report.verifications if v.result != 0]
    return sorted(set(left))
