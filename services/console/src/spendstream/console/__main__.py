"""Run the console alone: `python -m spendstream.console [--check]`."""

from __future__ import annotations

from collections.abc import Sequence

from spendstream.common.service import entrypoint
from spendstream.console.app import create_service
from spendstream.console.settings import ConsoleSettings


def main(argv: Sequence[str] | None = None) -> int:
    return entrypoint("console", ConsoleSettings, create_service, argv)


if __name__ == "__main__":
    raise SystemExit(main())
