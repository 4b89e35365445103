"""`cellfab alarm` against a real daemon: the list as a table and as JSON, an
acknowledgement, a shelving signed with the password read from standard input, and
the exit status of a refusal."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from daemon.cli import main, tokens
from tests.alarms.helpers import (
    alarm_until,
    clear_unit,
    daemon_on,
    end,
    long_batch,
    people,
    unacked,
)
from tests.support.daemon import PASSWORD, SimTwins


@contextlib.contextmanager
def config_of(folder: Path) -> Iterator[None]:
    old = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("XDG_CONFIG_HOME", None)
        else:
            os.environ["XDG_CONFIG_HOME"] = old


def cli(folder: Path, url: str, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    try:
        sys.stdin = io.StringIO(stdin)
        with config_of(folder), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["alarm", *argv, "--api", url])
    finally:
        sys.stdin = old_stdin
    return code, out.getvalue(), err.getvalue()


async def test_list_ack_and_shelve_from_the_command_line(
    sim_cell: SimTwins, tmp_path: Path
) -> None:
    with daemon_on(sim_cell, tmp_path / "journal.sqlite") as d:
        folders = {}
        for name in ("op1", "sup1"):
            folders[name] = tmp_path / name
            with config_of(folders[name]):
                tokens.save(d.url, d.token(name), name, "")
        async with people(d) as who:
            bid, cartridge, unit = await long_batch(who["tester"], sim_cell)
            await asyncio.to_thread(sim_cell.twin, lambda c: c.inject_fault(unit, 5, "pump"))
            aid = (await alarm_until(who["op1"], bid, "alarm", unacked))["alarm_id"]

            code, out, _ = await asyncio.to_thread(cli, folders["op1"], d.url, "list")
            assert code == 0 and aid in out and "unit_fault" in out and cartridge in out
            code, out, _ = await asyncio.to_thread(
                cli, folders["op1"], d.url, "list", "--batch", bid, "--json"
            )
            assert code == 0 and [a["alarm_id"] for a in json.loads(out)] == [aid]
            code, out, _ = await asyncio.to_thread(
                cli, folders["op1"], d.url, "ack", aid, "--reason", "pump seen"
            )
            assert code == 0 and "acknowledged" in out
            code, _, err = await asyncio.to_thread(
                cli, folders["op1"], d.url, "shelve", aid, "--duration", "60", "--reason", "x",
                stdin=f"{PASSWORD}\n",
            )  # fmt: skip
            assert code == 1 and "(403)" in err and "supervisor" in err
            code, out, _ = await asyncio.to_thread(
                cli, folders["sup1"], d.url, "shelve", aid, "--duration", "600", "--reason",
                "spare on its way", stdin=f"{PASSWORD}\n",
            )  # fmt: skip
            assert code == 0 and "shelved" in out
            code, out, _ = await asyncio.to_thread(cli, folders["op1"], d.url, "show", aid)
            assert code == 0 and "Sam Upton" in out and "spare on its way" in out
            await end(who["tester"], bid)
            await clear_unit(sim_cell, unit)
