"""Run rollup alone: `python -m spendstream.rollup [--check]`."""

from __future__ import annotations

import sys

from spendstream.common import logs
from spendstream.common.service import build_http_app, serve
from spendstream.rollup.app import create_service
from spendstream.rollup.settings import RollupSettings


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    settings = RollupSettings()
    if "--check" in args:
        settings.kek_bytes()
        print("rollup configuration is valid")
        return 0
    logs.configure(settings.log_level)
    serve(
        build_http_app([create_service(settings)], title="spendstream rollup"), settings.http_host, settings.http_port
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
