"""A workspace's erasure requests as `GET /v1/deletions` lists them: newest first, a page at a time.

The order is (requested_at, request_id) descending, a total order inside one workspace (ids are unique there),
so a cursor naming the last row shown resumes exactly after it even while new requests arrive (they sort
before it). A cursor is that position, `<requested_at in microseconds since the epoch>.<request_id>`: it
carries nothing the page did not show, and every string of its pattern is a position, so a list is never
refused a cursor its schema allows (another workspace's cursor only pages that workspace's own requests).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from spendstream.common.erasure import DeletionRequest, Origin, State
from spendstream.retention.requests import Subject, shared_fields

SortKey = tuple[int, str]
CURSOR_PATTERN = r"^-?[0-9]{1,16}\.[A-Za-z0-9_-]{1,64}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class DeletionSummary(BaseModel):
    """One row of the list: what `GET /v1/deletions/{request_id}` shows, less the receipt's body (fetched there)."""

    request_id: str
    subject: Subject
    customer_hash: str | None
    state: State
    reason: str | None
    origin: Origin
    requested_by: str
    requested_at: datetime
    updated_at: datetime | None
    completed_at: datetime | None  # once verified or failed: the receipt's, else the final record's
    has_receipt: bool

    @classmethod
    def of(cls, request: DeletionRequest) -> DeletionSummary:
        return cls(
            **shared_fields(request),
            completed_at=request.receipt.completed_at
            if request.receipt
            else (request.updated_at if request.terminal else None),
            has_receipt=request.receipt is not None,
        )


class DeletionPage(BaseModel):
    deletions: list[DeletionSummary]
    next_cursor: str | None  # pass as `cursor` for the next page; null on the last


def sort_key(request: DeletionRequest) -> SortKey:
    return (request.requested_at - _EPOCH) // _MICROSECOND, request.request_id


def encode_cursor(key: SortKey) -> str:
    return f"{key[0]}.{key[1]}"


def decode_cursor(cursor: str) -> SortKey:
    """A cursor of CURSOR_PATTERN (the route's schema checks it) as the position it names."""
    micros, _, request_id = cursor.partition(".")
    return int(micros), request_id


def page(
    requests: Iterable[DeletionRequest], *, limit: int, cursor: str | None = None, state: State | None = None
) -> DeletionPage:
    """One page of `requests` (a single workspace's), newest first, after `cursor` if given."""
    after = decode_cursor(cursor) if cursor else None
    rows = sorted(
        (r for r in requests if (state is None or r.state == state) and (after is None or sort_key(r) < after)),
        key=sort_key,
        reverse=True,
    )
    shown = rows[:limit]
    more = len(rows) > limit
    return DeletionPage(
        deletions=[DeletionSummary.of(r) for r in shown],
        next_cursor=encode_cursor(sort_key(shown[-1])) if more else None,
    )
