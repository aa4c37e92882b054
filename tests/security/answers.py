"""What of an answer to workspace A must hold nothing of workspace B."""

from __future__ import annotations

import re

_TARGET = re.compile(r'"target":\s*"[^"]*"')


def of_a(path: str, text: str) -> str:
    """The answer without what A itself sent. A's audit log names the targets A's own requests named (these tests
    put B's ids in A's paths on purpose): those are A's records of what A tried, not B's data."""
    if path.startswith("/v1/audit"):
        return _TARGET.sub("", text)
    return text
