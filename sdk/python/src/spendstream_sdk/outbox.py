"""The bounded queue between `track()` and the sender: appending never blocks; a full queue refuses."""

from __future__ import annotations

from collections import deque
from typing import Any

# (time.monotonic() when queued, the event). The event's `timestamp` is a float (Unix seconds) until the batch is
# encoded, so track() does not pay for the ISO text.
Item = tuple[float, dict[str, Any]]


class Outbox:
    """A FIFO of at most `capacity` items. track() appends to `items` from any thread after checking the length
    (deque.append is atomic under the GIL; racing callers may overshoot the bound by one each, which is harmless);
    the sender alone takes from it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: deque[Item] = deque()  # appended to directly by track(), the hot path

    def __len__(self) -> int:
        return len(self.items)

    def take(self, limit: int) -> list[Item]:
        """Up to `limit` of the oldest items."""
        items = self.items
        taken: list[Item] = []
        while items and len(taken) < limit:
            taken.append(items.popleft())
        return taken

    def put_back(self, items: list[Item]) -> None:
        """Return taken items to the front, in their order (a sender stopped before the server answered)."""
        self.items.extendleft(reversed(items))

    def take_older_than(self, queued_before: float) -> int:
        """Drop the leading items queued before `queued_before` (monotonic); how many."""
        items = self.items
        dropped = 0
        while items and items[0][0] < queued_before:
            items.popleft()
            dropped += 1
        return dropped
