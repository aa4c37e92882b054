"""Run ingest alone: `python -m spendstream.ingest [--check]`."""

from __future__ import annotations

from collections.abc import Sequence

from spendstream.common.service import entrypoint
from spendstream.ingest.app import create_service
from spendstream.ingest.settings import IngestSettings


def main(argv: Sequence[str] | None = None) -> int:
    return entrypoint("ingest", IngestSettings, create_service, argv)


if __name__ == "__main__":
    raise SystemExit(main())
