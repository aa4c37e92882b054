"""people's subcommands of the `spendstream` CLI.

spendstream member add WORKSPACE EMAIL --role ROLE [--name NAME]
    make the person a member (the workspace's first owner, typically) and print a one-time sign-in link, or
    mail it when SMTP is configured. The link is shown once and stored only as a hash.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, cast

from spendstream.common.access import ROLES
from spendstream.common.audit import AuditUnavailable
from spendstream.common.records import Role
from spendstream.common.settings import load
from spendstream.people.bootstrap import add_member
from spendstream.people.directory import DirectoryError
from spendstream.people.mail import MailUnavailable
from spendstream.people.settings import PeopleSettings


def register(subparsers: Any) -> None:
    member = subparsers.add_parser("member", help="workspace members")
    actions = member.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a member (bootstraps a workspace's first owner)")
    add.add_argument("workspace")
    add.add_argument("email")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--name", default="")
    add.set_defaults(handler=add_command)


def add_command(args: argparse.Namespace) -> int:
    settings = load(PeopleSettings)
    try:
        added = asyncio.run(add_member(settings, args.workspace, args.email, cast(Role, args.role), args.name))
    except DirectoryError as exc:
        print(f"spendstream: {exc}", file=sys.stderr)
        return 2
    except AuditUnavailable:
        print("spendstream: the audit record could not be written; nothing was changed", file=sys.stderr)
        return 1
    except MailUnavailable as exc:
        print(f"spendstream: the sign-in e-mail could not be sent ({exc})", file=sys.stderr)
        return 1
    out: dict[str, Any] = {"workspace_id": added.workspace_id, "member_id": added.member_id, "role": added.role}
    if added.link is not None:
        out["signin_link"] = added.link
        out["note"] = "the link signs in once and is shown once"
    else:
        out["note"] = "a one-time sign-in link was sent by e-mail"
    print(json.dumps(out, indent=2))
    return 0
