"""The bounded queue between `track()` and the sender: appending never blocks; a full queue refuses."""

from __future__ import annotations

from collections import deque
from typing import Any

# (time.monotonic() when queued, the event). The event's `timestamp` is a float (Unix seconds) until the batch is
# encoded, so track() does not pay for the ISO text.
Item = tuple[float, dict[str, Any]]


class Outbox:
    """A FIFO of at most `capacity` items. `put` is called from any thread (deque.append is atomic under the
    GIL; two racing callers may overshoot the bound by one each, which is harmless); `take` from the sender only."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Item] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Item) -> bool:
        """Queue `item`; False when the queue is full (the caller counts the drop)."""
        if len(self._items) >= self.capacity:
            return False
        self._items.append(item)
        return True

    def take(self, limit: int) -> list[Item]:
        """Up to `limit` of the oldest items."""
        items = self._items
        taken: list[Item] = []
        while items and len(taken) < limit:
            taken.append(items.popleft())
        return taken

    def take_older_than(self, queued_before: float) -> int:
        """Drop the leading items queued before `queued_before` (monotonic); how many."""
        items = self._items
        dropped = 0
        while items and items[0][0] < queued_before:
            items.popleft()
            dropped += 1
        return dropped
