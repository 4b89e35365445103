"""A run of batches on `cellfab run` (a child process) that a test kills and restarts,
and the evidence it leaves: what each batch did, and whether the instruments agree.

``Scenario`` plays the people around the cell while the daemon lives, dies and comes
back. They are users of the daemon (``PEOPLE``): the first admin made on the journal
before the first start, the others added by that admin over the API, each signed in
once; their tokens must work after every restart (``start()`` checks). ``tester`` starts
the batches over the API, a loader puts their cartridges at the LoadPort as it frees,
and whoever holds a prompt's role answers it (a qa prompt signed with the password);
both shrug off a dead daemon and try again, and fail the run on a 401 or 403. The test
decides when to ``kill()`` (kill -9) and ``start()`` again; ``progress(n)`` waits until
the journal has grown by ``n`` records, so kills land at random points of the batches'
lives whatever the machine's speed.

After every kill, before the restart, ``check_instruments()`` compares the instruments
with the journal on disk (the daemon is dead, so it cannot catch up): every program and
move the shuttle started has its intent in the journal, for that unit and cartridge,
and was started once; every Cell Q slot that holds one of the run's samples holds a
JobSeq the journal announced for it; the jobs created since the run began are no more
than the journal's job intents. ``finish()`` stops the daemon, asserts that every intent
was started exactly once and every job created exactly once, and runs `cellfab journal
verify`. ``outcomes()`` reads what each batch did from the journal, to compare with an
unkilled reference run of the same orders.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from bench.daemon_process import CELLFAB, DaemonProcess, Staff
from daemon.batch.machine import Batch, replay
from daemon.journal import files
from daemon.journal import records as r
from simulators.controls import Started
from tests.durability.rig import Rig, SiteFiles
from tests.support import HANG_GUARD, POLL, fresh
from tests.support.daemon import PASSWORD, STAFF, client_for

FINAL: Final = frozenset({"Complete", "Stopped", "Aborted"})
RUN_GUARD: Final = 150.0  # wall seconds for a whole run to end: a hang guard only
# the users of a run: the tests' staff (its admin is the first admin, made locally) and
# two operators of test_accepted
PEOPLE: Final = {
    **{name: who for name, who in STAFF.items() if name != "admin1"},
    "ann": ("Ann Oakes", ("operator",)),
    "op7": ("Otto Seven", ("operator",)),
}
CONFIRMS_AS: Final = {"operator": "op1", "supervisor": "sup1", "qa": "qa1"}  # prompt role -> who


@dataclass(frozen=True)
class Order:
    recipe: str
    params: dict[str, Any] = field(default_factory=dict)


# Five batches that between them take every path recovery has: moves, programs on three
# kinds of unit, a process-time wait, a sample the batch waits for, one it does not, an
# await, a confirmation, a step visited twice, a deliberate failure.
MIX: Final = (
    Order("dur_chain", {"hours": 4.0}),
    Order("dur_qc"),
    Order("dur_confirm"),
    Order("dur_loop"),
    Order("dur_chain", {"hours": 2.0}),
)


@dataclass(frozen=True)
class Outcome:
    """What one batch did, from its journal records."""

    recipe: str
    state: str
    outcome: str
    steps: tuple[str, ...]  # StepStarted, in order
    programs: tuple[tuple[str, str, int], ...]  # (step, program, attempt) per intent
    jobs: int
    deviations: tuple[str, ...]  # kinds

    def without_deviations(self) -> Outcome:
        return Outcome(
            self.recipe, self.state, self.outcome, self.steps, self.programs, self.jobs, ()
        )


# What a lost link leaves on a batch: the system's hold, and a program it could not hold
# on the instrument it could not reach. A kill leaves no deviation of its own, but on a
# loaded machine a driver may time out and lose a link; tests that inject wire faults
# cause them on purpose.
LINK_DEVIATIONS: Final = frozenset({"link", "hold_not_on_instrument"})


def assert_same(got: Sequence[Outcome], expected: Sequence[Outcome]) -> None:
    """Each batch ended as in the unkilled reference run: the same state, outcome, steps,
    programs (step, program, attempt) and jobs; no deviation but a lost link's."""
    assert [g.without_deviations() for g in got] == [e.without_deviations() for e in expected]
    for g in got:
        assert set(g.deviations) <= LINK_DEVIATIONS, g


def refused(answer: httpx.Response) -> None:
    """A request the people make is never refused for who they are: a 401 after a
    restart is a lost user or token (a bug), a 403 a wrong role or signature."""
    assert answer.status_code not in (401, 403), f"{answer.request.url}: {answer.text}"


class Scenario:
    def __init__(
        self, rig: Rig, files_: SiteFiles, orders: Sequence[Order] = MIX, *, operator: bool = True
    ) -> None:
        self.rig = rig
        self.operator = operator  # False: the test answers confirm prompts itself
        self.files = files_
        self.orders = tuple(orders)
        self.daemon = DaemonProcess(files_.site, files_.api_url, files_.log)
        self.staff = Staff(PEOPLE, PASSWORD, admin="admin1")
        self._people: list[asyncio.Task[None]] = []
        self.cartridges = [fresh("K") for _ in self.orders]
        self.batches: list[str] = []
        self.kills = 0
        self.jobs_before = 0
        self.mark = 0  # journal seq when the daemon was last ready, or progress() returned
        self._db: sqlite3.Connection | None = None

    # ------------------------------------------------------------------ the daemon
    async def start(self) -> None:
        """Start the daemon (the first time: its first admin made on the journal before,
        the staff hired after); once it serves, every token given out still works."""
        if self.daemon.starts == 0:
            await asyncio.to_thread(self.staff.first_admin, self.files.site)
        self.daemon.start()
        await asyncio.to_thread(self.daemon.wait_ready, RUN_GUARD)
        if not self.staff.tokens:
            await asyncio.to_thread(self.staff.hire, self.files.api_url)
        else:
            await self.check_signed_in()
        self.mark = self.seq()

    async def check_signed_in(self) -> None:
        """Every user's token (signed in once, at the first start) is still theirs:
        users and tokens live in the journal and outlast a kill -9."""
        for name in self.staff.tokens:
            async with self.api(name) as api:
                answer = await api.get("/auth/me")
            assert answer.status_code == 200, f"{name}'s token after a restart: {answer.text}"
            assert answer.json()["user"]["name"] == name

    async def kill(self, *, check: bool = True) -> None:
        """kill -9; the proxies drop what the dead daemon left on them; then (``check``)
        the instruments are compared with the journal on disk."""
        assert self.daemon.kill() == -9
        self.kills += 1
        for proxy in (self.rig.shuttle_proxy, self.rig.cellq_proxy):
            await proxy.drop_connections()
        if check:
            await self.check_instruments()

    async def stop(self) -> None:
        code = await asyncio.to_thread(self.daemon.stop)
        assert code == 0, f"cellfab run ended with {code} on SIGTERM:\n{self.daemon.log_tail()}"

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Scenario]:
        """The daemon started, and the people at work, until the block ends."""
        self.jobs_before = await self.rig.jobs_created()
        await self.start()
        self._people = []
        try:
            self._people = [asyncio.create_task(self._loader())]
            if self.operator:
                self._people.append(asyncio.create_task(self._operator()))
            yield self
        finally:
            for task in self._people:
                task.cancel()
            for task in self._people:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self.daemon.alive:
                await self.stop()
            if self._db is not None:
                self._db.close()
                self._db = None

    # ------------------------------------------------------------------ requests
    @contextlib.asynccontextmanager
    async def api(self, who: str = "tester") -> AsyncIterator[httpx.AsyncClient]:
        """A client signed in as ``who`` (one of ``PEOPLE``)."""
        token = self.staff.tokens[who]
        async with client_for(self.files.api_url, token, timeout=10.0) as client:
            yield client

    async def create(self, count: int | None = None) -> list[str]:
        """POST /batches for the next ``count`` orders (all that are left by default),
        201 each; the new batch ids, in order."""
        first = len(self.batches)
        last = len(self.orders) if count is None else first + count
        async with self.api() as api:
            for order, cartridge in zip(
                self.orders[first:last], self.cartridges[first:last], strict=True
            ):
                answer = await api.post(
                    "/batches",
                    json={
                        "recipe": order.recipe,
                        "params": order.params,
                        "cartridge_id": cartridge,
                    },
                )
                assert answer.status_code == 201, answer.text
                self.batches.append(answer.json()["batch_id"])
        return self.batches[first:]

    async def batches_now(self) -> list[dict[str, Any]] | None:
        """GET /batches, or None while the daemon cannot answer."""
        try:
            async with self.api() as api:
                answer = await api.get("/batches")
        except httpx.TransportError:
            return None
        refused(answer)
        return answer.json() if answer.status_code == 200 else None  # type: ignore[no-any-return]

    async def all_final(self) -> bool:
        now = await self.batches_now()
        if now is None:
            return False
        states = {b["batch_id"]: b["state"] for b in now}
        return all(states.get(bid) in FINAL for bid in self.batches)

    async def until_final(self, limit: float = RUN_GUARD) -> None:
        deadline = time.monotonic() + limit
        while not await self.all_final():
            for task in self._people:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise AssertionError("one of the people failed") from task.exception()
            if not self.daemon.alive:
                raise AssertionError(f"the daemon died:\n{self.daemon.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"hang guard: batches not final after {limit:g} s: "
                    f"{await self.batches_now()}\n{self.daemon.log_tail()}"
                )
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ the people
    async def _loader(self) -> None:
        """Cartridges to the LoadPort, in order, each once the port is free."""
        for cartridge in self.cartridges:
            while not await self.rig.insert(cartridge):  # noqa: ASYNC110 (the twin's port)
                await asyncio.sleep(0.02)

    async def _operator(self) -> None:
        """Answer every confirm prompt as someone who holds the role it asks for (a qa
        prompt with a signature: the password); a dead daemon, a refusal in the batch's
        state (it moved on, or was held) or a timeout is tried again; 401 or 403 is not."""
        while True:
            for b in await self.batches_now() or []:
                waiting = b.get("waiting")
                if not waiting or b["state"] != "Running" or b["batch_id"] not in self.batches:
                    continue
                body = {"step": waiting["step"], "reason": "checked the cartridge"}
                if waiting["role"] == "qa":
                    body["password"] = PASSWORD
                with contextlib.suppress(httpx.TransportError):
                    async with self.api(CONFIRMS_AS[waiting["role"]]) as api:
                        refused(await api.post(f"/batches/{b['batch_id']}/confirm", json=body))
            await asyncio.sleep(0.03)

    # ------------------------------------------------------------------ the journal
    def seq(self) -> int:
        """The journal's last committed seq (read-only, safe while the daemon writes)."""
        if self._db is None:
            if not self.files.journal.exists():
                return 0
            self._db = files.connect_ro(self.files.journal)
        row = self._db.execute("SELECT coalesce(max(seq), 0) FROM records").fetchone()
        return int(row[0])

    async def progress(self, records: int) -> bool:
        """Wait until the journal has ``records`` more records than when the daemon was
        last ready (or this last returned); False (at once) when every batch is final
        first."""
        target = self.mark + records
        checked = 0.0
        async with asyncio.timeout(RUN_GUARD):
            while self.seq() < target:
                if time.monotonic() - checked > 0.2:
                    checked = time.monotonic()
                    if self.batches and await self.all_final():
                        return False
                await asyncio.sleep(POLL)
        self.mark = self.seq()
        return True

    def records(self) -> list[tuple[int, r.Record]]:
        return list(files.read_records(self.files.journal))

    def journal_batches(self) -> dict[str, Batch]:
        return replay(self.records())

    async def wait_record(
        self, what: str, match: Callable[[r.Record], bool], limit: float = HANG_GUARD
    ) -> r.Record:
        """The first journal record for which ``match`` holds (polling the file)."""
        after = 0
        async with asyncio.timeout(limit):
            while True:
                for seq, rec in files.read_records(self.files.journal, after=after):
                    after = seq
                    if match(rec):
                        return rec
                if not self.daemon.alive:
                    raise AssertionError(f"the daemon died waiting for {what}")
                await asyncio.sleep(POLL)

    # ------------------------------------------------------------------ evidence
    def _ours(self, task_or_sample: str) -> str | None:
        for bid in self.batches:
            if task_or_sample.startswith(bid + "/") or task_or_sample.startswith(bid + "-S"):
                return bid
        return None

    async def started(self) -> list[Started]:
        """What the shuttle started for this run's cartridges (fresh ids: another run's
        batch may share a batch id when two journals draw the same instance tag)."""
        mine = set(self.cartridges)
        return [s for s in await self.rig.started() if s.cartridge_id in mine]

    async def check_instruments(self) -> None:
        """The instruments know nothing the journal does not (the daemon is dead)."""
        assert not self.daemon.alive
        recs = [rec for _s, rec in self.records()]
        intents = {
            rec.task_id: rec for rec in recs if isinstance(rec, r.ProgramIntent | r.MoveIntent)
        }
        cartridge = dict(zip(self.batches, self.cartridges, strict=False))
        started = await self.started()
        for s in started:
            rec = intents.get(s.task_id)
            assert rec is not None, f"the shuttle started {s}; the journal has no intent for it"
            if isinstance(rec, r.ProgramIntent):
                assert (s.unit, s.program) == (rec.unit, rec.program), (s, rec)
            else:
                assert (s.unit, s.program) == ("Transport", "move"), (s, rec)
            assert s.cartridge_id == cartridge[rec.batch_id], (s, rec)
        twice = [k for k, n in Counter(s.task_id for s in started).items() if n > 1]
        assert not twice, f"started more than once: {twice}"
        jobs = {rec.job_seq: rec for rec in recs if isinstance(rec, r.JobIntent)}
        for slot, (seq, sample) in (await self.rig.slots()).items():
            if self._ours(sample):
                assert seq in jobs and jobs[seq].sample_id == sample, (
                    f"Cell Q slot {slot} holds job {seq} of sample {sample}; the journal's "
                    f"jobs: {[(j.job_seq, j.sample_id) for j in jobs.values()]}"
                )
        created = await self.rig.jobs_created() - self.jobs_before
        assert created <= len(jobs), f"{created} jobs created for {len(jobs)} job intents"

    async def finish(self) -> list[Outcome]:
        """Stop the daemon cleanly; every intent started once, every job created once,
        the journal verifies; what each batch did."""
        if self.daemon.alive:
            await self.stop()
        recs = [rec for _s, rec in self.records()]
        intents = [rec for rec in recs if isinstance(rec, r.ProgramIntent | r.MoveIntent)]
        counts = Counter((s.unit, s.task_id) for s in await self.started())
        for rec in intents:
            unit = rec.unit if isinstance(rec, r.ProgramIntent) else "Transport"
            assert counts[(unit, rec.task_id)] == 1, (
                f"{rec.task_id} started {counts[(unit, rec.task_id)]} times on {unit}"
            )
        assert sum(counts.values()) == len(intents), "a start the journal does not know"
        jobs = [rec for rec in recs if isinstance(rec, r.JobIntent)]
        created = await self.rig.jobs_created() - self.jobs_before
        assert created == len(jobs), f"{created} Cell Q jobs created for {len(jobs)} intents"
        verify = await asyncio.to_thread(
            subprocess.run,
            [CELLFAB, "journal", "verify", "--journal", str(self.files.journal)],
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "verify: ok" in verify.stdout
        for cartridge in self.cartridges:
            await self.rig.remove(cartridge)
        return self.outcomes()

    def outcomes(self) -> list[Outcome]:
        recs = [rec for _s, rec in self.records()]
        final = self.journal_batches()
        out = []
        for bid in self.batches:
            mine = [rec for rec in recs if rec.batch_id == bid]
            b = final[bid]
            out.append(
                Outcome(
                    recipe=b.recipe_name,
                    state=b.state.value,
                    outcome=b.outcome,
                    steps=tuple(rec.step for rec in mine if isinstance(rec, r.StepStarted)),
                    programs=tuple(
                        (rec.step, rec.program, rec.attempt)
                        for rec in mine
                        if isinstance(rec, r.ProgramIntent)
                    ),
                    jobs=len(b.jobs),
                    deviations=tuple(d.kind for d in b.deviations),
                )
            )
        return out
