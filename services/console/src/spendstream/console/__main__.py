"""Run the console alone: `python -m spendstream.console [--check]`.

Not `service.entrypoint`: that one first proves the KEK against the workspaces' data keys on Kafka, and the
console holds no key, reads no topic and needs neither to serve its pages. `--check` validates the settings
and that the npm-built assets are there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from spendstream.common import logs
from spendstream.common.service import build_http_app, serve
from spendstream.common.settings import ConfigurationError, check
from spendstream.console.app import create_service
from spendstream.console.assets import Assets, AssetsMissing
from spendstream.console.settings import ConsoleSettings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spendstream.console", description="Run the spendstream console.")
    parser.add_argument("--check", action="store_true", help="validate the configuration, write nothing, and exit")
    args = parser.parse_args(argv)
    try:
        settings = check(ConsoleSettings)
        Assets.load()
    except (ConfigurationError, AssetsMissing) as exc:
        print("\n".join(f"console: {line}" for line in str(exc).splitlines()), file=sys.stderr)
        return 2
    if args.check:
        print("console configuration is valid")
        return 0
    logs.configure(settings.log_level)
    serve(
        build_http_app([create_service(settings)], title="spendstream console"),
        settings.http_host,
        settings.http_port,
        trusted_proxies=settings.trusted_proxies,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
