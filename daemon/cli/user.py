"""`cellfab user`: users of the daemon (admin), and one's own password.

Over the API, signed in as an admin (``cellfab login``): ``list``, ``add NAME
--full-name TEXT --role ROLE [--role ROLE] --reason TEXT`` (the password is asked
twice), ``disable|enable|unlock NAME --reason TEXT``, ``roles NAME --role ... --reason``,
``passwd NAME --reason TEXT`` (sets another user's password). ``passwd --reason TEXT``
without a name changes one's own (any user; the old password first).

The first admin of an installation (decision 0080): ``add NAME --first-admin --full-name
TEXT --reason TEXT [--site FILE | --journal PATH]`` works on the journal file itself,
not over the API, only while no daemon holds it and only when it has no user at all.
Exit status as ``cellfab batch``: 0 ok, 1 refused, 2 usage, 3 unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from daemon.api.client import Client, ClientError
from daemon.cli.api_cli import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    ask_password,
    common,
    login_name,
    reason_argument,
    run,
)

ROLES = ("operator", "supervisor", "qa", "admin")


def register(subparsers: argparse._SubParsersAction) -> None:
    parent = common()
    user = subparsers.add_parser("user", help="users (admin)", description=__doc__.split("\n\n")[0])
    sub = user.add_subparsers(dest="user_command", required=True, metavar="SUBCOMMAND")

    lst = sub.add_parser("list", parents=[parent], help="every user (disabled ones too)")
    lst.set_defaults(func=_run(cmd_list))

    add = sub.add_parser("add", parents=[parent], help="add a user (or the first admin)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--full-name", required=True, help="the printed name shown in signatures")
    add.add_argument("--role", action="append", choices=ROLES, default=[], help="repeatable")
    add.add_argument("--first-admin", action="store_true", help="locally, on an empty journal")
    add.add_argument("--journal", type=Path, metavar="PATH", help="with --first-admin")
    reason_argument(add, "the user is added")
    add.set_defaults(func=cmd_add)

    for name, what in (
        ("disable", "disable a user (never deleted)"),
        ("enable", "enable a disabled user"),
        ("unlock", "unlock a user locked after failed sign-ins"),
    ):
        cmd = sub.add_parser(name, parents=[parent], help=what)
        cmd.add_argument("name", metavar="NAME")
        reason_argument(cmd)
        cmd.set_defaults(func=_run(cmd_change), change=name)

    roles = sub.add_parser("roles", parents=[parent], help="set a user's roles")
    roles.add_argument("name", metavar="NAME")
    roles.add_argument("--role", action="append", choices=ROLES, required=True)
    reason_argument(roles)
    roles.set_defaults(func=_run(cmd_roles))

    passwd = sub.add_parser("passwd", parents=[parent], help="your password, or a user's (admin)")
    passwd.add_argument("name", nargs="?", metavar="NAME", help="another user (admin)")
    reason_argument(passwd)
    passwd.set_defaults(func=_run(cmd_passwd))


def _run(command: Any) -> Any:
    return run(command, "cellfab user")


def new_password(name: str) -> str:
    first = ask_password(f"New password for {name}: ")
    again = ask_password("The same again: ")
    if first != again:
        raise ClientError("the two passwords differ")
    return first


def _print_user(args: argparse.Namespace, answer: Any) -> int:
    if args.json:
        print(answer.text)
        return EXIT_OK
    print(_line(answer.data))
    return EXIT_OK


def _line(u: dict[str, Any]) -> str:
    state = "enabled" if u["enabled"] else "disabled"
    if u["locked"]:
        state += ", LOCKED"
    return f"{u['id']:>4}  {u['name']:<20} {u['full_name']:<28} {','.join(u['roles']):<24} {state}"


def cmd_list(args: argparse.Namespace, api: Client) -> int:
    answer = api.get("/users")
    if args.json:
        print(answer.text)
        return EXIT_OK
    for u in answer.data:
        print(_line(u))
    return EXIT_OK


def cmd_add(args: argparse.Namespace) -> int:
    if args.first_admin:
        return _first_admin(args)
    if args.journal:
        print("cellfab user: --journal is only for --first-admin", file=sys.stderr)
        return EXIT_USAGE
    return _run(_add)(args)


def _add(args: argparse.Namespace, api: Client) -> int:
    if not args.role:
        raise ClientError("give the user at least one --role")
    body = {
        "name": args.name,
        "full_name": args.full_name,
        "roles": args.role,
        "password": new_password(args.name),
        "reason": args.reason,
    }
    return _print_user(args, api.post("/users", body))


def cmd_change(args: argparse.Namespace, api: Client) -> int:
    return _print_user(args, api.post(f"/users/{args.name}/{args.change}", {"reason": args.reason}))


def cmd_roles(args: argparse.Namespace, api: Client) -> int:
    body = {"roles": args.role, "reason": args.reason}
    return _print_user(args, api.post(f"/users/{args.name}/roles", body))


def cmd_passwd(args: argparse.Namespace, api: Client) -> int:
    if args.name:
        body = {"password": new_password(args.name), "reason": args.reason}
        return _print_user(args, api.post(f"/users/{args.name}/password", body))
    me = api.get("/auth/me").data["user"]["name"]
    old = ask_password(f"Current password for {me}: ")
    body = {"old_password": old, "password": new_password(me), "reason": args.reason}
    return _print_user(args, api.post("/auth/password", body))


def _first_admin(args: argparse.Namespace) -> int:
    from daemon.audit.errors import RequestRefused
    from daemon.auth.first_admin import add_first_admin
    from daemon.auth.passwords import Hasher
    from daemon.config.defaults import default_site
    from daemon.config.load import SiteError, load_site
    from daemon.journal.errors import JournalError

    if args.api:
        print(
            "cellfab user: --first-admin works on the journal file, not over --api", file=sys.stderr
        )
        return EXIT_USAGE
    if args.role and args.role != ["admin"]:
        print("cellfab user: the first admin has the admin role only", file=sys.stderr)
        return EXIT_USAGE
    try:
        site = load_site(args.site) if args.site else default_site()
    except SiteError as exc:
        print(f"cellfab user: the site does not load: {exc}", file=sys.stderr)
        return EXIT_USAGE
    journal = args.journal or site.journal
    argon = site.auth.argon2
    try:
        password = new_password(args.name)
        user = asyncio.run(
            add_first_admin(
                Path(journal),
                hasher=Hasher(argon.time_cost, argon.memory_kib, argon.parallelism),
                name=args.name,
                full_name=args.full_name,
                password=password,
                reason=args.reason,
                login=login_name() or "unknown",
            )
        )
    except ClientError as exc:
        print(f"cellfab user: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (RequestRefused, JournalError) as exc:
        print(f"cellfab user: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"first admin {user.name} (id {user.id}) added to {journal}; sign in: cellfab login")
    return EXIT_OK
