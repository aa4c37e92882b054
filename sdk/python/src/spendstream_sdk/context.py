"""`tags(...)`: tags every event tracked inside the block carries, held in a context variable.

A context variable follows asyncio tasks (each task starts with a copy of its creator's context) and threads that
run in a copied context (`contextvars.copy_context().run`, or an executor given `ctx.run`). A thread started
plainly begins with an empty context and sees no tags, as Python defines it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

from spendstream_sdk.events import check_tags

_EMPTY: Mapping[str, str] = MappingProxyType({})
_TAGS: ContextVar[Mapping[str, str]] = ContextVar("spendstream_sdk_tags", default=_EMPTY)


def current_tags() -> Mapping[str, str]:
    """The tags of the innermost `tags(...)` block (read-only), empty outside any."""
    return _TAGS.get()


@contextmanager
def tags(**values: str) -> Iterator[Mapping[str, str]]:
    """Every event tracked inside the block carries these tags, merged over those of an enclosing block (inner
    wins); tags passed to `track()` itself win over both. The keys and values are checked on entry as
    `track()` checks them (the server's rules and the privacy guard), so a bad tag raises `EventRefused` here."""
    merged = {**_TAGS.get(), **values}
    check_tags(merged)
    token = _TAGS.set(MappingProxyType(merged))
    try:
        yield _TAGS.get()
    finally:
        _TAGS.reset(token)
