"""Run rollup alone: `python -m spendstream.rollup [--check]`."""

from __future__ import annotations

from collections.abc import Sequence

from spendstream.common.service import entrypoint
from spendstream.rollup.app import create_service
from spendstream.rollup.settings import RollupSettings


def main(argv: Sequence[str] | None = None) -> int:
    return entrypoint("rollup", RollupSettings, create_service, argv)


if __name__ == "__main__":
    raise SystemExit(main())
