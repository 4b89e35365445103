"""Helpers of the interoperability tests: is Node.js there, and child processes that
announce an endpoint on stdout (the node-opcua shuttle, ``cellfab sim``, the node client
check), read by a thread so that a wait has a hang guard.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.support import HANG_GUARD

INTEROP = Path(__file__).resolve().parent
ROOT = INTEROP.parents[1]
NODE_MODULES = INTEROP / "node_modules"
STARTUP_GUARD = 4 * HANG_GUARD  # node-opcua loads its nodeset and makes a certificate first


def node_missing() -> str | None:
    """Why the Node.js side cannot run here, or None."""
    if shutil.which("node") is None:
        return "node (Node.js >= 20) is not installed"
    if not (NODE_MODULES / ".package-lock.json").is_file():  # npm ci writes it last
        return f"{NODE_MODULES} is missing or partial: run `make interop` (npm ci there)"
    return None


@dataclass
class Announcing:
    """A child process and the stdout lines it printed so far (read by a thread)."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def wait_for(self, pattern: str, limit: float = STARTUP_GUARD) -> re.Match[str]:
        """The first stdout line matching ``pattern``; the limit is only a hang guard."""
        rx = re.compile(pattern)
        while True:
            try:
                line = self.lines.get(timeout=limit)
            except queue.Empty:
                raise AssertionError(f"hang guard: no line matching {pattern!r}") from None
            if line is None:
                raise AssertionError(f"process ended before printing {pattern!r}: {self.seen}")
            self.seen.append(line)
            if m := rx.search(line):
                return m


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def spawn(cmd: Sequence[str], stderr: IO[str], cwd: Path = ROOT) -> Announcing:
    """Start ``cmd`` with a pipe on stdin (kept open: our children stop when it closes)."""
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    child = Announcing(proc)
    assert proc.stdout is not None
    threading.Thread(target=_pump, args=(proc.stdout, child.lines), daemon=True).start()
    return child


def stop(child: Announcing) -> None:
    """SIGTERM, then SIGKILL after the hang guard."""
    proc = child.proc
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdin:
        proc.stdin.close()


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment without any CELLFAB_* instrument variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLFAB_")}
    env.update(extra)
    return env
