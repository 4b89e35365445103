"""A process that uses a journal the way the daemon does, for the crash and lock tests.

Run from the repository root: ``python -m tests.journal.child MODE PATH [SEED]``.
Every line it prints is flushed at once, so the parent sees exactly what was
acknowledged before it killed this process.

* ``append PATH SEED``: ``WORKERS`` tasks append for ever. Worker ``w``'s first append
  is ``BatchCreated(W<w>)``; its append ``i`` > 0 holds 1 to 4 ``Deviation`` records
  with messages ``w:i:k``. After each acknowledged append: ``ack w i seq,seq,...``.
* ``hold PATH``: opens the journal, prints ``ready PID``, holds it until stdin closes.
* ``fill PATH``: appends, then limits its own file size (RLIMIT_FSIZE: the kernel
  answers a write past it with EFBIG, as a full disk answers ENOSPC) and appends until
  the writer fails; prints ``ack SEQ`` per acknowledged record, ``failed TYPE: TEXT``,
  ``failure TYPE`` (``Journal.failure``), ``later TYPE: TEXT`` for an append after the
  failure, then ``closed``.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import signal
import sys
from pathlib import Path

import structlog

from daemon.journal import records as r
from daemon.journal.store import Journal
from tests.journal.sample import created

WORKERS = 4


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def deviation(w: int, i: int, k: int, size: int = 0) -> r.Deviation:
    return r.Deviation(batch_id=f"W{w}", kind="tick", message=f"{w}:{i}:{k}" + "x" * size)


async def append_forever(path: Path, seed: int) -> None:
    journal = Journal.open(path)
    say("ready")

    async def worker(w: int) -> None:
        rng = random.Random(seed * 100 + w)
        seqs = await journal.append(created(f"W{w}"))
        say(f"ack {w} 0 {seqs[0]}")
        i = 1
        while True:
            n = rng.randint(1, 4)
            seqs = await journal.append(*(deviation(w, i, k) for k in range(n)))
            say(f"ack {w} {i} {','.join(map(str, seqs))}")
            i += 1

    await asyncio.gather(*(worker(w) for w in range(WORKERS)))


async def hold(path: Path) -> None:
    journal = Journal.open(path)
    say(f"ready {os.getpid()}")
    await asyncio.to_thread(sys.stdin.read)
    await journal.close()
    say("closed")


async def fill(path: Path) -> None:
    journal = Journal.open(path)
    for seq in await journal.append(created("W0")):
        say(f"ack {seq}")
    sizes = [p.stat().st_size for p in path.parent.iterdir() if p.is_file()]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max(sizes) + 64 * 1024, hard))
    i = 1
    try:
        while True:
            for seq in await journal.append(deviation(0, i, 0, size=3000)):
                say(f"ack {seq}")
            i += 1
    except Exception as exc:
        say(f"failed {type(exc).__name__}: {exc}")
    say(f"failure {type(journal.failure).__name__}")
    try:
        await journal.append(deviation(0, i + 1, 0))
    except Exception as exc:
        say(f"later {type(exc).__name__}: {exc}")
    await journal.close()
    say("closed")


def main() -> None:
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    mode, path = sys.argv[1], Path(sys.argv[2])
    if mode == "append":
        asyncio.run(append_forever(path, int(sys.argv[3])))
    elif mode == "hold":
        asyncio.run(hold(path))
    elif mode == "fill":
        asyncio.run(fill(path))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
