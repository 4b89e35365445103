"""`cellfab batch` end to end: the command run as a user runs it, against a daemon over
the twins, and its exit status (0 ok, 1 refused, 2 usage, 3 unreachable)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from daemon.cli.batch import EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, typed
from tests.support import CELLFAB, HANG_GUARD, fresh
from tests.support.daemon import (
    PASSWORD,
    RunningDaemon,
    SimTwins,
    batch_until,
    insert_cartridge,
)


def cellfab(
    *args: str, timeout: float = HANG_GUARD, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``cellfab batch ARGS``; ``password`` is typed on standard input (a signature)."""
    return subprocess.run(
        [CELLFAB, "batch", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        input=None if password is None else password + "\n",
    )


@pytest.fixture(scope="module", autouse=True)
def signed_in(
    api_daemon: RunningDaemon, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """``cellfab login`` as tester, once: the token file in a config folder of its own."""
    config = tmp_path_factory.mktemp("config")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CONFIG_HOME", str(config))
        done = subprocess.run(
            [CELLFAB, "login", "--user", "tester", "--api", api_daemon.url],
            input=PASSWORD + "\n",
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
            check=False,
        )
        assert done.returncode == EXIT_OK, done.stderr
        yield


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_start_list_show_hold_restart(
    api_daemon: RunningDaemon, api: httpx.AsyncClient
) -> None:
    url = api_daemon.url
    cartridge = fresh("C")
    started = await asyncio.to_thread(
        cellfab, "start", "qc_only", "--cartridge", cartridge, "--param", "volume_ml=0.6",
        "--api", url,
    )  # fmt: skip
    assert started.returncode == EXIT_OK, started.stderr
    batch_id = started.stdout.split()[0]
    assert "Running" in started.stdout and cartridge in started.stdout
    batch = (await api.get(f"/batches/{batch_id}")).json()
    assert batch["params"]["volume_ml"] == 0.6 and batch["created_by"] == "tester"

    listed = await asyncio.to_thread(cellfab, "list", "--json", "--api", url)
    assert listed.returncode == EXIT_OK
    assert json.loads(listed.stdout) == (await api.get("/batches")).json()  # unchanged
    table = await asyncio.to_thread(cellfab, "list", "--state", "Running", "--api", url)
    assert batch_id in table.stdout and "qc_only 1.0" in table.stdout

    shown = await asyncio.to_thread(cellfab, "show", batch_id, "--api", url)
    assert shown.returncode == EXIT_OK
    assert (
        "volume_ml" in shown.stdout
        and "0.6" in shown.stdout
        and batch["recipe_hash"] in shown.stdout
    )
    records = await asyncio.to_thread(cellfab, "show", batch_id, "--records", "--api", url)
    assert "BatchCreated" in records.stdout and "CommandIssued" in records.stdout

    held = await asyncio.to_thread(cellfab, "hold", batch_id, "--reason", "check", "--api", url)
    assert held.returncode == EXIT_OK and batch_id in held.stdout
    await batch_until(api, batch_id, lambda b: b["state"] == "Held", "Held")
    again = await asyncio.to_thread(cellfab, "hold", batch_id, "--reason", "x", "--api", url)
    assert again.returncode == EXIT_REFUSED
    assert "refused (409)" in again.stderr and "Hold is not allowed in state Held" in again.stderr
    as_json = await asyncio.to_thread(
        cellfab, "hold", batch_id, "--reason", "x", "--json", "--api", url
    )
    assert as_json.returncode == EXIT_REFUSED and json.loads(as_json.stderr)["field"] == "command"
    restarted = await asyncio.to_thread(
        cellfab, "restart", batch_id, "--reason", "checked", "--json", "--api", url
    )
    assert restarted.returncode == EXIT_OK
    assert json.loads(restarted.stdout)["state"] in ("Restarting", "Running")
    wrong = await asyncio.to_thread(
        partial(cellfab, "abort", batch_id, "--reason", "done", "--api", url, password="nope")
    )
    assert wrong.returncode == EXIT_REFUSED and "refused (403)" in wrong.stderr
    aborted = await asyncio.to_thread(
        partial(cellfab, "abort", batch_id, "--reason", "done", "--api", url, password=PASSWORD)
    )
    assert aborted.returncode == EXIT_OK, aborted.stderr
    signatures = await asyncio.to_thread(cellfab, "show", batch_id, "--signatures", "--api", url)
    assert "signed 'aborted' by Tess Ter" in signatures.stdout and "(valid)" in signatures.stdout


async def test_watch_follows_a_batch_until_it_is_final(
    api_daemon: RunningDaemon, api: httpx.AsyncClient, sim_cell: SimTwins
) -> None:
    cartridge = fresh("C")
    started = await asyncio.to_thread(
        cellfab, "start", "qc_only", "--cartridge", cartridge, "--json", "--api", api_daemon.url
    )
    batch_id = json.loads(started.stdout)["batch_id"]
    watch = await asyncio.create_subprocess_exec(
        CELLFAB, "batch", "watch", batch_id, "--api", api_daemon.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    json_watch = await asyncio.create_subprocess_exec(
        CELLFAB, "batch", "watch", batch_id, "--json", "--api", api_daemon.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert watch.stdout is not None
    first = await asyncio.wait_for(watch.stdout.readline(), HANG_GUARD)  # it is watching
    assert batch_id in first.decode()
    await insert_cartridge(api, sim_cell, cartridge)
    async with asyncio.timeout(HANG_GUARD):
        out, err = await watch.communicate()
        json_out, json_err = await json_watch.communicate()
    assert watch.returncode == EXIT_OK, err.decode()
    text = out.decode()
    assert "StepStarted qc_sample" in text and "final" in text and "Complete" in text
    assert json_watch.returncode == EXIT_OK, json_err.decode()
    events = [json.loads(line) for line in json_out.decode().splitlines()]
    assert {e["batch_id"] for e in events} == {batch_id}
    assert events[-1]["data"]["state"] == "Complete"
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)


def test_a_finished_batch_is_watched_at_once(api_daemon: RunningDaemon) -> None:
    url = api_daemon.url
    started = cellfab("start", "qc_only", "--cartridge", fresh("C"), "--json", "--api", url)
    batch_id = json.loads(started.stdout)["batch_id"]
    aborted = cellfab("abort", batch_id, "--reason", "x", "--api", url, password=PASSWORD)
    assert aborted.returncode == EXIT_OK, aborted.stderr
    watched = cellfab("watch", batch_id, "--api", url)  # Aborting or Aborted: it ends
    assert watched.returncode == EXIT_OK and "Aborted" in watched.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ("start", "qc_only", "--cartridge", "C-X1", "--param", "volume_ml=abc"),
            "must be a number",
        ),
        (("start", "qc_only", "--cartridge", "C-X2", "--param", "volume_ml=5"), "above 2"),
        (("start", "no_such", "--cartridge", "C-X3"), "no recipe no_such"),
        (("start", "qc_only", "--cartridge", "bad id"), "cartridge_id"),
        (("show", "B9999-ZZZ"), "no batch 'B9999-ZZZ'"),
        (("confirm", "B9999-ZZZ", "step", "--reason", "ok"), "no batch"),
    ],
)
def test_a_refusal_is_exit_1_with_the_daemons_words(
    api_daemon: RunningDaemon, args: tuple[str, ...], words: str
) -> None:
    done = cellfab(*args, "--api", api_daemon.url)
    assert done.returncode == EXIT_REFUSED, done.stderr
    assert words in done.stderr and done.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ("start", "qc_only"),  # no --cartridge
        ("start", "qc_only", "--cartridge", "C1", "--param", "volume_ml"),
        ("start", "qc_only", "--cartridge", "C1", "--params-json", "[1]"),
        ("list", "--api", "ftp://example"),
        ("hold",),
        ("confirm", "B1", "s"),  # no --reason
        ("stop", "B1"),  # no --reason
        ("nope",),
    ],
)
def test_usage_errors_are_exit_2(api_daemon: RunningDaemon, args: tuple[str, ...]) -> None:
    extra = () if "--api" in args or args in (("hold",), ("nope",)) else ("--api", api_daemon.url)
    done = cellfab(*args, *extra)
    assert done.returncode == EXIT_USAGE, (done.stdout, done.stderr)


@pytest.mark.parametrize("target", ["http", "unix"])
def test_nothing_listening_is_exit_3(target: str, tmp_path: Path) -> None:
    api = f"http://127.0.0.1:{free_port()}" if target == "http" else f"unix:{tmp_path}/no.sock"
    for args in (("list",), ("show", "B0001-AAA"), ("watch", "B0001-AAA")):
        done = cellfab(*args, "--api", api)
        assert done.returncode == EXIT_UNREACHABLE, done.stderr
        assert "no daemon answers" in done.stderr or "broke" in done.stderr


def test_the_site_file_says_where_the_api_is(api_daemon: RunningDaemon, tmp_path: Path) -> None:
    port = api_daemon.url.rsplit(":", 1)[1]
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: elsewhere\n"
        f"journal: {tmp_path}/journal.sqlite\n"
        f"api: {{bind: '127.0.0.1:{port}'}}\n"
        "shuttles:\n"
        "  - {name: s1, url: 'opc.tcp://127.0.0.1:4840/shuttle', security: {allow_none: true}}\n"
    )
    done = cellfab("list", "--json", "--site", str(site))
    assert done.returncode == EXIT_OK, done.stderr
    assert isinstance(json.loads(done.stdout), list)
    (tmp_path / "bad.yaml").write_text("site: [\n")
    assert cellfab("list", "--site", str(tmp_path / "bad.yaml")).returncode == EXIT_USAGE


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("0.5", "number", 0.5),
        ("3", "int", 3),
        ("3.5", "int", "3.5"),  # as written: the daemon names the parameter
        ("yes", "bool", True),
        ("off", "bool", "off"),
        ("5", "string", "5"),
    ],
)
def test_param_values_are_typed_by_the_recipe(text: str, kind: str, value: object) -> None:
    assert typed(text, kind) == value


def test_the_client_side_loads_no_server_code() -> None:
    probe = (
        "import sys, daemon.api, daemon.api.client, daemon.cli.batch, daemon.cli.batch_view\n"
        "loaded = [m for m in ('fastapi', 'uvicorn', 'daemon.api.server', 'asyncua') "
        "if m in sys.modules]\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=True,
    )
    assert done.stdout.strip() == "[]"
