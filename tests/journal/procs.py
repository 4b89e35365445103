"""Parent side of the subprocess tests: start ``tests.journal.child``, read its lines."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
from pathlib import Path

from tests.support import HANG_GUARD

ROOT = Path(__file__).resolve().parents[2]


def start(*args: str, stdin: bool = False) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.journal.child", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


class Lines:
    """Whole lines from a child's stdout; a hang guard, never a timing assertion."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self._fd = proc.stdout.fileno()
        self._proc = proc
        self._buffer = b""
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)
        self.eof = False

    def next(self) -> str | None:
        """The next whole line, or None at end of output (a cut last line is dropped)."""
        while b"\n" not in self._buffer:
            if self.eof:
                return None
            if not self._selector.select(HANG_GUARD):
                raise AssertionError(f"hang guard: child {self._proc.args} printed nothing")
            chunk = os.read(self._fd, 65536)
            if not chunk:
                self.eof = True
                continue
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def rest(self) -> list[str]:
        """Every remaining whole line until the child's stdout closes."""
        out = []
        while (line := self.next()) is not None:
            out.append(line)
        return out


def stderr_of(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stderr is not None
    return proc.stderr.read().decode(errors="replace")
