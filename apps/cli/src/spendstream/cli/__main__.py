"""The `spendstream` command: provisioning, tenants, and running the services.

spendstream topics create              create every declared topic (auto-creation is off)
spendstream workspace create NAME      create a workspace; prints its id and keys (shown once) as JSON
spendstream up                         the six services and the console in one process on one port (monolithic mode)
spendstream run SERVICE                one service alone, on its own port, in its own consumer group
spendstream member add WS EMAIL --role R   add a member (a workspace's first owner); prints a one-time sign-in link
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from collections.abc import Callable

from spendstream.cli import commands

# Each service may add its own subcommands: `spendstream.<service>.cli.register(subparsers)` adds parsers that
# set `handler=<function(args) -> int>`. The CLI composes them; services never import each other.
Handler = Callable[[argparse.Namespace], int]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spendstream", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    topics = sub.add_parser("topics", help="Kafka topic provisioning").add_subparsers(dest="action", required=True)
    topics.add_parser("create", help="create every declared topic that is missing")
    topics.add_parser("list", help="print the topic registry")

    workspace = sub.add_parser("workspace", help="workspaces and keys").add_subparsers(dest="action", required=True)
    create = workspace.add_parser("create", help="create a workspace and print its keys once")
    create.add_argument("name")
    create.add_argument("--plan", default="free")

    up = sub.add_parser("up", help="run the six services and the console in one process (monolithic mode)")
    up.add_argument("--check", action="store_true", help="validate the configuration and exit")

    run = sub.add_parser("run", help="run one service alone (microservices mode)")
    run.add_argument("service", choices=commands.SERVICES)
    run.add_argument("--check", action="store_true", help="validate the configuration and exit")

    for service in commands.SERVICES:
        try:
            module = importlib.import_module(f"spendstream.{service}.cli")
        except ModuleNotFoundError as exc:
            if exc.name != f"spendstream.{service}.cli":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        handler: Handler | None = getattr(args, "handler", None)
        if handler is not None:
            return handler(args)
        if args.command == "topics" and args.action == "create":
            created = asyncio.run(commands.create_topics())
            print(json.dumps({"created": created}))
        elif args.command == "topics" and args.action == "list":
            print(json.dumps(commands.list_topics(), indent=2))
        elif args.command == "workspace" and args.action == "create":
            print(json.dumps(asyncio.run(commands.create_workspace(args.name, args.plan)), indent=2))
        elif args.command == "up":
            return commands.up(check=args.check)
        elif args.command == "run":
            return commands.run(args.service, check=args.check)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"spendstream: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
