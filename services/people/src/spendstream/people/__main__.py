"""Run people alone: `python -m spendstream.people [--check]`."""

from __future__ import annotations

from collections.abc import Sequence

from spendstream.common.service import entrypoint
from spendstream.people.app import create_service
from spendstream.people.settings import PeopleSettings


def main(argv: Sequence[str] | None = None) -> int:
    return entrypoint("people", PeopleSettings, create_service, argv)


if __name__ == "__main__":
    raise SystemExit(main())
