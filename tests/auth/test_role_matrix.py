"""The full role matrix: every API route and every CLI command that talks to the API,
by no one and by each role, answers as the access table says (401 / 403 naming the
role / past the role check). The table itself is checked against a hand-written copy
of issue #11's role list, so it cannot be wrong silently."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.api.access import ACTIONS
from daemon.auth.roles import ACTION_ROLES, PUBLIC, ROLES, SIGNED_IN
from daemon.cli import main, tokens
from tests.support.daemon import LIBRARY, PASSWORD, RunningDaemon, client_for

# issue #11, by hand: what each role may do beyond reading (and signing out)
ISSUE: dict[str, set[str]] = {
    "operator": {
        "batch.start",
        "batch.command.start",
        "batch.command.hold",
        "batch.command.restart",
        "batch.command.pause",
        "batch.command.resume",
        "batch.confirm",  # operator prompts (the prompt's role is checked at the prompt)
        "alarm.ack",
    },
    "supervisor": {
        "batch.start",
        "batch.command.start",
        "batch.command.hold",
        "batch.command.restart",
        "batch.command.pause",
        "batch.command.resume",
        "batch.command.stop",
        "batch.command.abort",
        "batch.command.reset",
        "batch.confirm",
        "alarm.ack",
        "alarm.shelve",
        "recipe.submit",
    },
    "qa": {
        "recipe.approve",
        "recipe.retire",
        "recipe.submit",
        "batch.release",
        "batch.confirm",
        "audit.read",
    },
    "admin": {
        "user.list",
        "user.add",
        "user.disable",
        "user.enable",
        "user.passwd",
        "user.unlock",
        "user.roles",
        "audit.read",
    },
}
WHO = (None, "op1", "sup1", "qa1", "admin1")
ROLE_OF = {"op1": "operator", "sup1": "supervisor", "qa1": "qa", "admin1": "admin"}
COMMANDS = ("start", "stop", "hold", "restart", "abort", "reset", "pause", "resume")


def test_the_access_table_is_the_issues_role_list() -> None:
    for role in ROLES:
        granted = {a for a, roles in ACTION_ROLES.items() if role in roles}
        assert granted == ISSUE[role], role
    open_to_all = {a for a, r in ACTION_ROLES.items() if r is SIGNED_IN}
    assert open_to_all == {"read", "recipe.validate", "auth.logout", "auth.whoami", "auth.password"}
    assert {a for a, r in ACTION_ROLES.items() if r is PUBLIC} == {"health", "auth.login"}
    used = {t.format(command=c) for t in ACTIONS.values() for c in COMMANDS}
    assert used - set(ACTION_ROLES) == set()  # every route's action has its roles


def expected(action: str, who: str | None) -> str:
    want = ACTION_ROLES[action]
    if want is PUBLIC:
        return "passes"
    if who is None:
        return "401"
    if want is SIGNED_IN or ROLE_OF[who] in want:
        return "passes"
    return "403"


def routes(doc: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(method, path with parameters filled, action) for every operation."""
    for path, item in doc["paths"].items():
        for method, op in item.items():
            template = ACTIONS[op["operationId"]]
            for command in COMMANDS if "{command}" in path else ("",):
                filled = path.format(
                    batch_id="B9999-ZZZ",
                    command=command,
                    name="nobody",
                    sha256="0" * 64,
                    alarm_id="A9999",
                )
                yield method.upper(), filled, template.format(command=command)


@pytest.fixture(scope="module")
def doc(api_daemon: RunningDaemon) -> dict[str, Any]:
    with httpx.Client(base_url=api_daemon.url) as c:
        return c.get("/openapi.json").json()  # type: ignore[no-any-return]


async def test_every_route_by_no_one_and_by_each_role(
    api_daemon: RunningDaemon, doc: dict[str, Any]
) -> None:
    checked = 0
    # sign-out last: it ends the token it is sent with
    ordered = sorted(routes(doc), key=lambda r: r[2] == "auth.logout")
    for method, path, action in ordered:
        for who in WHO:
            token = api_daemon.token(who) if who else None
            async with client_for(api_daemon.url, token) as api:
                if path == "/events" and expected(action, who) == "passes":
                    async with api.stream("GET", path) as response:
                        status = response.status_code
                else:
                    response = await api.request(
                        method, path, json={} if method == "POST" else None
                    )
                    status = response.status_code
            want = expected(action, who)
            where = (method, path, who, status)
            if want == "401":
                assert status == 401, where
                assert response.headers["www-authenticate"] == "Bearer"
            elif want == "403":
                assert status == 403, where
                body = response.json()
                assert body["field"] == "authorization", body
                needed = " or ".join(r for r in ROLES if r in ACTION_ROLES[action])
                assert f"needs the {needed} role" in body["detail"], body
            else:
                assert status not in (401, 403) and status < 500, where
            checked += 1
    assert checked >= 5 * 35
    for name in ROLE_OF:  # their tokens were spent by sign-out: sign in again
        api_daemon.tokens[name] = api_daemon.run(
            lambda n=name: api_daemon.daemon.directory.login(n, PASSWORD)
        )[0]


# --------------------------------------------------------------------------- the CLI
def cli_commands(batch_id: str, recipe: Path) -> list[tuple[list[str], str, int]]:
    """(argv, action, passwords it asks) of every CLI command that talks to the API."""
    b = batch_id
    out: list[tuple[list[str], str, int]] = [
        (["batch", "list"], "read", 0),
        (["batch", "show", b], "read", 0),
        (["batch", "show", b, "--records"], "read", 0),
        (["batch", "show", b, "--signatures"], "read", 0),
        (["batch", "start", "qc_only", "--cartridge", "C-MATRIX"], "batch.start", 0),
        (["batch", "start", "--batch", b, "--reason", "x"], "batch.command.start", 0),
        (["batch", "confirm", b, "nowhere", "--reason", "x"], "batch.confirm", 0),
        (["batch", "release", b, "--reason", "x"], "batch.release", 1),
        (["recipe", "submit", str(recipe), "--reason", "x"], "recipe.submit", 0),
        (["recipe", "approve", str(recipe), "--reason", "x"], "recipe.approve", 1),
        (["recipe", "retire", str(recipe), "--reason", "x"], "recipe.retire", 1),
        (["user", "list"], "user.list", 0),
        (["user", "disable", "nobody", "--reason", "x"], "user.disable", 0),
        (["user", "enable", "nobody", "--reason", "x"], "user.enable", 0),
        (["user", "unlock", "nobody", "--reason", "x"], "user.unlock", 0),
        (["user", "roles", "nobody", "--role", "qa", "--reason", "x"], "user.roles", 0),
        (["user", "passwd", "nobody", "--reason", "x"], "user.passwd", 2),
        (
            ["user", "add", "nobody2", "--full-name", "N", "--role", "qa", "--reason", "x"],
            "user.add",
            2,
        ),
        (["audit", "export", "--batch", b], "audit.read", 0),
        (["batch", "report", b, "-o", os.devnull], "read", 0),
        (["alarm", "list"], "read", 0),
        (["alarm", "list", "--all", "--batch", b], "read", 0),
        (["alarm", "show", "A9999"], "read", 0),
        (["alarm", "ack", "A9999", "--reason", "x"], "alarm.ack", 0),
        (["alarm", "shelve", "A9999", "--duration", "60", "--reason", "x"], "alarm.shelve", 1),
    ]
    for command in ("hold", "restart", "pause", "resume", "reset", "stop", "abort"):
        out.append(
            (
                ["batch", command, b, "--reason", "x"],
                f"batch.command.{command}",
                int(command in ("stop", "abort")),
            )
        )
    return out


def run_cli(argv: list[str], config: Path, api: str, passwords: int) -> tuple[int, str]:
    err = io.StringIO()
    stdin = io.StringIO("".join(f"{PASSWORD}\n" for _ in range(passwords)))
    old = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(config)
    try:
        with (
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(io.StringIO()),
            _stdin(stdin),
        ):
            code = main([*argv, "--api", api])
    finally:
        if old is None:
            os.environ.pop("XDG_CONFIG_HOME", None)
        else:
            os.environ["XDG_CONFIG_HOME"] = old
    return code, err.getvalue()


@contextlib.contextmanager
def _stdin(stream: io.StringIO) -> Iterator[None]:
    import sys

    old, sys.stdin = sys.stdin, stream
    try:
        yield
    finally:
        sys.stdin = old


def test_every_cli_command_by_no_one_and_by_each_role(
    api_daemon: RunningDaemon, tmp_path: Path
) -> None:
    url = api_daemon.url
    with httpx.Client(
        base_url=url, headers={"authorization": f"Bearer {api_daemon.token('tester')}"}
    ) as c:
        batch = c.post("/batches", json={"recipe": "qc_only", "cartridge_id": "C-MATRIX0"}).json()
    configs: dict[str | None, Path] = {}
    for who in WHO:
        configs[who] = tmp_path / (who or "nobody")
        if who is not None:
            token, _ = api_daemon.run(lambda w=who: api_daemon.daemon.directory.login(w, PASSWORD))
            old = os.environ.get("XDG_CONFIG_HOME")
            os.environ["XDG_CONFIG_HOME"] = str(configs[who])
            try:
                tokens.save(url, token, who, "")
            finally:
                if old is None:
                    os.environ.pop("XDG_CONFIG_HOME", None)
                else:
                    os.environ["XDG_CONFIG_HOME"] = old
    for argv, action, passwords in cli_commands(batch["batch_id"], LIBRARY / "qc_only.yaml"):
        for who in WHO:
            code, err = run_cli(argv, configs[who], url, passwords)
            want = expected(action, who)
            where = (argv, who, code, err)
            if want == "401":
                assert code == 1 and "refused (401)" in err and "cellfab login" in err, where
            elif want == "403":
                assert code == 1 and "refused (403)" in err and f"{who} holds" in err, where
            else:
                assert code in (0, 1) and "(401)" not in err and "(403)" not in err, where
                assert "(500)" not in err, where
