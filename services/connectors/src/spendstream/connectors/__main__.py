"""Run connectors alone: `python -m spendstream.connectors [--check]`."""

from __future__ import annotations

from collections.abc import Sequence

from spendstream.common.service import entrypoint
from spendstream.connectors.app import create_service
from spendstream.connectors.settings import ConnectorsSettings


def main(argv: Sequence[str] | None = None) -> int:
    return entrypoint("connectors", ConnectorsSettings, create_service, argv)


if __name__ == "__main__":
    raise SystemExit(main())
