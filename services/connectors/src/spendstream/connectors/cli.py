"""connectors' subcommands of the `spendstream` CLI.

  spendstream connectors import WORKSPACE FILE    import a CSV of daily provider usage (csv_import.py: the format)

The file is validated whole first: a bad line prints its line number, field and code (never the value) and
exits 2 with nothing published; a valid file is published on `connectors.usage.v1`, one record per provider and
day, as `POST /v1/connectors/import` does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from spendstream.common.kafka import Publisher, make_broker
from spendstream.common.records import ProviderDay
from spendstream.common.settings import load
from spendstream.common.topics import CONNECTORS_USAGE
from spendstream.connectors.csv_import import ImportRefused, parse
from spendstream.connectors.settings import ConnectorsSettings


def register(subparsers: Any) -> None:
    connectors = subparsers.add_parser("connectors", help="provider connectors")
    actions = connectors.add_subparsers(dest="action", required=True)
    imports = actions.add_parser("import", help="import a CSV of daily provider usage into a workspace")
    imports.add_argument("workspace")
    imports.add_argument("file", type=Path)
    imports.set_defaults(handler=import_file)


async def _publish(days: list[ProviderDay]) -> None:
    settings = load(ConnectorsSettings)
    broker = make_broker(settings, "cli")
    await broker.connect()
    try:
        out = Publisher(broker, CONNECTORS_USAGE, settings.topic_prefix)
        for day in days:
            await out.publish(day, day.key)
    finally:
        await broker.stop()


def import_file(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"spendstream: cannot read the file ({type(exc).__name__})", file=sys.stderr)
        return 2
    try:
        days = parse(text, args.workspace)
    except ImportRefused as refused:
        for e in refused.errors:
            print(f"line {e.line}, field {e.field}: {e.code} ({e.message})", file=sys.stderr)
        print("spendstream: nothing was imported", file=sys.stderr)
        return 2
    asyncio.run(_publish(days))
    print(
        json.dumps(
            {"imported": [{"provider": d.provider, "day": d.day.isoformat(), "rows": len(d.rows)} for d in days]}
        )
    )
    return 0
