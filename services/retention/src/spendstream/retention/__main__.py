"""Run retention alone: `python -m spendstream.retention [--check]`."""

from __future__ import annotations

from collections.abc import Sequence

from spendstream.common.service import entrypoint
from spendstream.retention.app import create_service
from spendstream.retention.settings import RetentionSettings


def main(argv: Sequence[str] | None = None) -> int:
    return entrypoint("retention", RetentionSettings, create_service, argv)


if __name__ == "__main__":
    raise SystemExit(main())
