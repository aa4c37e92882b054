"""Run alerts alone: `python -m spendstream.alerts [--check]`."""

from __future__ import annotations

from collections.abc import Sequence

from spendstream.alerts.app import create_service
from spendstream.alerts.settings import AlertsSettings
from spendstream.common.service import entrypoint


def main(argv: Sequence[str] | None = None) -> int:
    return entrypoint("alerts", AlertsSettings, create_service, argv)


if __name__ == "__main__":
    raise SystemExit(main())
