"""The README's kill loop: kill -9 `cellfab run` again and again while batches run, and
show that every batch still ends, nothing ran twice and the journal verifies.

``python -m bench.kill_loop [--batches N] [--kills K] [--seed S] [--time-scale X]
[--recipe NAME] [--dir DIR]``. What it does is what a person could do by hand with the
``cellfab`` command (README, "Durability"):

1. ``cellfab sim`` (the twins: a shuttle and Cell Q) on free ports, security None;
2. a site for them (journal and API socket in a folder of its own), its first admin
   made on the journal (``cellfab user add admin --first-admin``), ``cellfab run``;
3. the admin signs in (``cellfab login``) and adds an operator, olga, and a QA, quinn
   (``cellfab user add``); each signs in (``cellfab login``; each person has a config
   folder of their own, ``XDG_CONFIG_HOME``, where the token is kept);
4. olga: ``cellfab batch start RECIPE --cartridge ID`` N times; the loop puts each
   cartridge at the LoadPort as the port frees (the twin's InsertCartridge, ICD
   section 4) and quinn answers each QA prompt with ``cellfab batch confirm`` (an
   e-signature: the password on standard input);
5. K times: wait a random moment (seeded), ``kill -9`` the daemon, start it again
   (nobody signs in again: users and tokens are in the journal, and a 401 or 403
   fails the loop);
6. once every batch is final: ``cellfab batch list``, then the proof: the shuttle's
   ``StartedPrograms`` and Cell Q's jobs-created counter against the journal (each
   program, move and job started once, and only those the journal announced), and
   ``cellfab journal verify``.

Exit status 0 when every batch ended Complete with its procedure completed, nothing ran
twice and the journal verifies; 1 otherwise (the folder is then kept and named). The
test suite runs it in a short form (tests/durability/test_kill_loop.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

import httpx
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient

from bench.daemon_process import CELLFAB, DaemonProcess, api_client, bearer, sign_in
from daemon.cli.site import show_text
from daemon.config import sim_site
from daemon.journal import files
from daemon.journal import records as r
from simulators.cellq_controls import CellQControls
from simulators.controls import Started, TwinControls

ROOT: Final = Path(__file__).resolve().parents[1]
RECIPES: Final = (ROOT / "recipes", ROOT / "bench" / "recipes")
FINAL: Final = ("Complete", "Stopped", "Aborted")
OPERATOR, QA = "olga", "quinn"
PEOPLE: Final = {OPERATOR: ("Olga Perez", "operator"), QA: ("Quinn Adams", "qa")}


def say(text: str) -> None:
    print(text, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cellfab(
    *args: str, check: bool = True, home: Path | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """``cellfab ARGS`` as the person whose config folder (token) is ``home``, with
    ``stdin`` (passwords) on standard input; a refusal for who they are (401, 403) is
    always an error: a user or token lost in a kill -9."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(home)} if home else None
    done = subprocess.run(
        [CELLFAB, *args], input=stdin, capture_output=True, text=True, timeout=60, env=env
    )
    if (
        (check and done.returncode != 0)
        or "refused (401)" in done.stderr
        or ("refused (403)" in done.stderr)
    ):
        raise RuntimeError(f"cellfab {' '.join(args)}: exit {done.returncode}: {done.stderr}")
    return done


class Twins:
    """``cellfab sim`` as a child process, and the twin controls a person's hands are."""

    def __init__(self, folder: Path, time_scale: float, seed: int) -> None:
        self.log = (folder / "sim.log").open("w")
        self.proc = subprocess.Popen(
            [CELLFAB, "sim", "--time-scale", f"{time_scale:g}", "--seed", str(seed),
             "--security", "none", "--shuttle-port", str(free_port()),
             "--cellq-port", str(free_port())],
            stdout=subprocess.PIPE, stderr=self.log, text=True,
        )  # fmt: skip
        self.endpoints: dict[str, str] = {}
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            words = line.split()
            if len(words) == 2 and words[0] in ("shuttle", "cellq"):
                self.endpoints[words[0]] = words[1]
            if line.startswith("Ctrl-C"):
                break
        if set(self.endpoints) != {"shuttle", "cellq"}:
            raise RuntimeError(f"cellfab sim did not start (see {folder / 'sim.log'})")
        self.ua = Client(self.endpoints["shuttle"])
        host, port = self.endpoints["cellq"].rsplit(":", 1)
        self.modbus = AsyncModbusTcpClient(host, port=int(port), timeout=5, retries=0)
        self.controls = TwinControls(self.ua)
        self.cellq = CellQControls(self.modbus)

    async def connect(self) -> None:
        await self.ua.connect()
        assert await self.controls.discover(), "the shuttle twin has no controls"
        assert await self.modbus.connect() and await self.cellq.discover()

    async def reconnect(self) -> None:
        """A new OPC UA session for the controls: asyncua drops one whose keep-alive
        read is late, as on a loaded machine (the twin itself must still run)."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"cellfab sim exited with status {self.proc.returncode}")
        say("  the twin controls' OPC UA session dropped: connecting again")
        with contextlib.suppress(Exception):
            await self.ua.disconnect()
        self.ua = Client(self.endpoints["shuttle"])
        self.controls = TwinControls(self.ua)
        await self.ua.connect()
        assert await self.controls.discover(), "the shuttle twin has no controls"

    async def insert(self, cartridge: str) -> bool:
        try:
            await self.controls.insert(cartridge, 2e8, 90.0)
        except ua.UaStatusCodeError as exc:
            if exc.code != ua.StatusCodes.BadInvalidState:
                raise
            return False
        except ConnectionError:
            await self.reconnect()
            return False
        return True

    async def started(self, cartridges: list[str]) -> list[Started]:
        """What the shuttle started for ``cartridges`` (Twin/StartedPrograms)."""
        try:
            started = await self.controls.started_programs()
        except ConnectionError:
            await self.reconnect()
            started = await self.controls.started_programs()
        return [s for s in started if s.cartridge_id in cartridges]

    async def close(self) -> None:
        self.modbus.close()
        await self.ua.disconnect()
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def listed(api: str, token: str) -> list[dict[str, Any]] | None:
    """GET /batches (what ``cellfab batch list --json`` prints), None while the daemon
    cannot answer. In process: polling with the command would spawn one a second."""
    try:
        with api_client(api, timeout=10) as client:
            answer = client.get("/batches", headers=bearer(token))
    except httpx.TransportError:
        return None
    if answer.status_code in (401, 403):
        raise RuntimeError(f"GET /batches refused after a restart: {answer.text}")
    return answer.json() if answer.status_code == 200 else None  # type: ignore[no-any-return]


def states(api: str, token: str, batches: list[str]) -> dict[str, str] | None:
    now = listed(api, token)
    if now is None:
        return None
    return {b["batch_id"]: b["state"] for b in now if b["batch_id"] in batches}


class Person:
    """A user of the daemon at a terminal of their own: a config folder
    (``XDG_CONFIG_HOME``: the token ``cellfab login`` keeps), a name and a password."""

    def __init__(self, folder: Path, name: str) -> None:
        self.home = folder / name
        self.name = name
        self.password = secrets.token_urlsafe(12)

    @property
    def once(self) -> str:
        return f"{self.password}\n"

    def cellfab(self, *args: str, check: bool = True, stdin: str = "") -> str:
        """``cellfab ARGS`` as this person, ``stdin`` on standard input (passwords,
        where a terminal would ask); its standard output."""
        return cellfab(*args, check=check, home=self.home, stdin=stdin).stdout


async def people(
    twins: Twins, site: Path, qa: Person, poll: tuple[str, str], cartridges: list[str],
    batches: list[str],
) -> None:  # fmt: skip
    """The loader (cartridges to the LoadPort in order) and QA (``cellfab batch confirm``
    for each prompt, signed); both try again while the daemon is down (``poll``: the API
    and the token the loop watches the batches with)."""
    pending = list(cartridges)
    while True:
        if pending and await twins.insert(pending[0]):
            pending.pop(0)
        for b in await asyncio.to_thread(listed, *poll) or []:
            w = b.get("waiting")
            if w and b["batch_id"] in batches and b["state"] == "Running":
                await asyncio.to_thread(
                    qa.cellfab, "batch", "confirm", b["batch_id"], w["step"], "--reason",
                    "QC panel reviewed", "--site", str(site), check=False, stdin=qa.once,
                )  # fmt: skip
        await asyncio.sleep(0.1)


def hire(admin: Person, site: Path, people: list[Person]) -> None:
    """Once the daemon serves: the admin signs in and adds each person in the role of
    ``PEOPLE`` (the new password typed twice), and each signs in."""
    where = ("--site", str(site))
    admin.cellfab("login", "--user", admin.name, *where, stdin=admin.once)
    for person in people:
        full_name, role = PEOPLE[person.name]
        admin.cellfab("user", "add", person.name, "--full-name", full_name, "--role", role,
                      "--reason", "staff of the cell", *where, stdin=person.once * 2)  # fmt: skip
        person.cellfab("login", "--user", person.name, *where, stdin=person.once)
        say(f"  cellfab user add {person.name} --role {role}; cellfab login --user {person.name}")


async def loop(args: argparse.Namespace, folder: Path) -> bool:
    rng = random.Random(args.seed)
    say(f"kill loop: {args.batches} {args.recipe} batches, {args.kills} kills, "
        f"time scale {args.time_scale:g}, seed {args.seed}, folder {folder}")  # fmt: skip
    twins = Twins(folder, args.time_scale, args.seed)
    try:
        await twins.connect()
        say(
            f"  cellfab sim: shuttle {twins.endpoints['shuttle']}, cellq {twins.endpoints['cellq']}"
        )
        journal = folder / "journal.sqlite"
        site = sim_site(twins.endpoints, args.time_scale, journal, recipes=RECIPES,
                        api_bind=f"unix:{folder / 'api.sock'}", name="kill-loop")  # fmt: skip
        policy = site.policy.model_copy(update={"allow_unapproved_recipes": True})
        # a simulated site may hash passwords cheaply: every QA confirmation is checked
        # against the password, and the machine also runs the twins and the daemon
        argon2 = site.auth.argon2.model_copy(
            update={"time_cost": 1, "memory_kib": 1024, "parallelism": 1}
        )
        auth = site.auth.model_copy(update={"argon2": argon2})
        site_file = folder / "site.yaml"
        site_file.write_text(show_text(site.model_copy(update={"policy": policy, "auth": auth})))
        where = ("--site", str(site_file))
        admin, olga, quinn = (Person(folder, name) for name in ("admin", OPERATOR, QA))
        admin.cellfab("user", "add", "admin", "--first-admin", "--full-name", "Ada Admin",
                      "--reason", "a new cell", *where, stdin=admin.once * 2)  # fmt: skip
        say(f"  cellfab user add admin --first-admin --site {site_file}")
        api = f"unix:{folder / 'api.sock'}"
        daemon = DaemonProcess(site_file, api, folder / "daemon.log")
        daemon.start()
        await asyncio.to_thread(daemon.wait_ready, 120)
        say(f"  cellfab run --site {site_file}: serving (pid {daemon.pid})")
        await asyncio.to_thread(hire, admin, site_file, [olga, quinn])
        with api_client(api, timeout=10) as client:  # olga's second session: the loop's eyes
            poll = (api, sign_in(client, olga.name, olga.password))
        jobs_before = await twins.cellq.jobs_created()
        cartridges = [f"KL{args.seed}-{i}-{rng.randrange(10**6)}" for i in range(args.batches)]
        batches: list[str] = []
        for c in cartridges:
            out = olga.cellfab("batch", "start", args.recipe, "--cartridge", c, "--json", *where)
            batches.append(json.loads(out)["batch_id"])
            say(f"  cellfab batch start {args.recipe} --cartridge {c}: {batches[-1]}")
        hands = asyncio.create_task(people(twins, site_file, quinn, poll, cartridges, batches))
        try:
            for k in range(1, args.kills + 1):
                await asyncio.sleep(rng.uniform(0.2, args.max_wait))
                _check(hands)
                now = await asyncio.to_thread(states, *poll, batches)
                if now is not None and all(s in FINAL for s in now.values()):
                    say("  every batch is final: no more kills")
                    break
                daemon.kill()
                t = time.monotonic()
                daemon.start()
                await asyncio.to_thread(daemon.wait_ready, 120)
                say(f"  kill -9 #{k}: {_count(now)}; restarted, serving again after "
                    f"{time.monotonic() - t:.1f} s")  # fmt: skip
            while True:
                _check(hands)
                now = await asyncio.to_thread(states, *poll, batches)
                if now is not None and all(s in FINAL for s in now.values()):
                    break
                await asyncio.sleep(0.2)
        finally:
            hands.cancel()
            await asyncio.gather(hands, return_exceptions=True)
        say("\n" + olga.cellfab("batch", "list", *where).rstrip())
        started = await twins.started(cartridges)
        jobs = await twins.cellq.jobs_created() - jobs_before
        daemon.stop()
        return _verdict(journal, batches, started, jobs)
    finally:
        await twins.close()


def _check(hands: asyncio.Task[None]) -> None:
    """Raise what stopped the people (a refusal for who they are, a twin that failed)."""
    if hands.done():
        hands.result()
        raise RuntimeError("the people stopped working")


def _count(now: dict[str, str] | None) -> str:
    if now is None:
        return "the daemon did not answer"
    return ", ".join(f"{n} {s}" for s, n in sorted(Counter(now.values()).items()))


def _verdict(journal: Path, batches: list[str], started: list[Any], jobs: int) -> bool:
    recs = [rec for _s, rec in files.read_records(journal)]
    intents = {
        ("Transport" if isinstance(rec, r.MoveIntent) else rec.unit, rec.task_id)
        for rec in recs
        if isinstance(rec, r.ProgramIntent | r.MoveIntent)
    }
    counts = Counter((s.unit, s.task_id) for s in started)
    twice = sorted(k for k, n in counts.items() if n > 1)
    unknown = sorted(set(counts) - intents)
    never = sorted(intents - set(counts))
    job_intents = sum(1 for rec in recs if isinstance(rec, r.JobIntent))
    finished = {rec.batch_id: rec.outcome for rec in recs if isinstance(rec, r.BatchFinished)}
    completed = [b for b in batches if finished.get(b) == "completed"]
    verify = cellfab("journal", "verify", "--journal", str(journal), check=False)
    say(
        f"\nshuttle: {len(counts)} programs and moves started, {len(twice)} more than once, "
        f"{len(unknown)} unknown to the journal, {len(never)} journaled but never started"
    )
    say(f"cell q: {jobs} jobs created for {job_intents} job intents")
    last = (verify.stdout.strip().splitlines() or [verify.stderr.strip()])[-1]
    say(f"cellfab journal verify: {last}")
    ok = (
        not twice and not unknown and not never and jobs == job_intents
        and verify.returncode == 0 and len(completed) == len(batches)
    )  # fmt: skip
    say(f"kill loop: {len(completed)} of {len(batches)} batches completed; "
        + ("nothing ran twice" if ok else "FAILED: " + "; ".join(
            f"{k}: {v}" for k, v in (("twice", twice), ("unknown", unknown), ("never", never))
            if v)))  # fmt: skip
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-scale", type=float, default=20_000.0)
    parser.add_argument(
        "--recipe", default="kill_loop", help="a recipe of the library or bench/recipes"
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        default=3.0,
        help="each kill comes 0.2 s to this many seconds after the daemon serves again",
    )
    parser.add_argument("--dir", type=Path, default=None, help="keep the run's files here")
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="cf-kill-", dir="/tmp"))
    folder.mkdir(parents=True, exist_ok=True)
    ok = asyncio.run(loop(args, folder))
    if ok and args.dir is None:
        shutil.rmtree(folder, ignore_errors=True)
    elif not ok:
        say(f"kept {folder} (daemon.log, journal.sqlite, site.yaml)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
