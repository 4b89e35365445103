"""`cellfab login`: sign in to a daemon and keep its token (decision 0081).

``cellfab login [--user NAME] [--api URL | --site FILE]`` asks the password (no echo;
one line of standard input when it is not a terminal), signs in, and keeps the token
for that API in ``$XDG_CONFIG_HOME/cellfab/token`` (``~/.config/cellfab/token``), mode
0600 (``daemon.cli.tokens``). Every command that talks to the API sends it until it
expires (the site's ``auth.token_hours``; 12 h by default) or ``cellfab logout``
revokes it. Five wrong passwords in a row lock the account until an admin unlocks it.
"""

from __future__ import annotations

import argparse
import sys

from daemon.api.client import Client
from daemon.cli import tokens
from daemon.cli.api_cli import EXIT_OK, ask_password, common, login_name, run


def register(subparsers: argparse._SubParsersAction) -> None:
    login = subparsers.add_parser(
        "login",
        parents=[common()],
        help="sign in to the daemon",
        description=__doc__.split("\n\n")[0],
    )
    login.add_argument("--user", default=login_name(), help="your user name (default: your login)")
    login.set_defaults(func=run(cmd_login, "cellfab login", signed_in=False))


def cmd_login(args: argparse.Namespace, api: Client) -> int:
    password = ask_password(f"Password for {args.user}: ")
    answer = api.post("/auth/login", {"name": args.user, "password": password})
    data = answer.data
    kept = tokens.save(api.target.url, data["token"], data["user"]["name"], data["expires_at"])
    user = data["user"]
    if args.json:
        print(answer.text)
    else:
        print(
            f"signed in as {user['name']} ({user['full_name']}; {', '.join(user['roles'])}) "
            f"at {api.target.url} until {data['expires_at']}; token kept in {kept}"
        )
    return EXIT_OK


def cmd_logout(args: argparse.Namespace, api: Client) -> int:
    api.post("/auth/logout", None)
    tokens.forget(api.target.url)
    print(f"signed out of {api.target.url}", file=sys.stderr)
    return EXIT_OK
