"""A daemon in a process of its own, for the kill -9 test (``test_crash.py``).

``python -m tests.alarms.daemon_child SHUTTLE_URL CELLQ_URL JOURNAL RECIPES`` serves the
daemon on the twins at those endpoints and prints one line once it is ready:
``READY <api url> <json of user name -> token>`` (the test staff, hired on a new
journal, signed in again on an old one). It runs until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import anyio

from daemon.audit.entries import Act, Actor
from daemon.supervisor import Daemon, build, serve
from tests.support.daemon import PASSWORD, STAFF, daemon_site


async def main(shuttle: str, cellq: str, journal: Path, recipes: Path, again: bool) -> None:
    twins = SimpleNamespace(endpoints={"shuttle": shuttle, "cellq": cellq})
    site = daemon_site(twins, journal, extra_recipes=[recipes])  # type: ignore[arg-type]
    daemon = build(site)
    ready = asyncio.Event()
    stop = anyio.Event()
    task = asyncio.create_task(serve(daemon, stop, on_ready=lambda _d: ready.set()))
    await ready.wait()
    tokens = await staff(daemon, again)
    print("READY", daemon.api_url, json.dumps(tokens), flush=True)
    await task


async def staff(daemon: Daemon, again: bool) -> dict[str, str]:
    tokens = {}
    act = Act(Actor("local:tests"), "the test staff")
    for name, (full_name, roles) in STAFF.items():
        if not again:
            await daemon.directory.add(act, name, full_name, roles, PASSWORD)
        tokens[name] = (await daemon.directory.login(name, PASSWORD))[0]
    return tokens


if __name__ == "__main__":
    path = Path(sys.argv[3])
    asyncio.run(main(sys.argv[1], sys.argv[2], path, Path(sys.argv[4]), path.exists()))
