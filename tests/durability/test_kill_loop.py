"""The README's kill loop (bench/kill_loop.py), in a short form, so it cannot rot: its
own twins (`cellfab sim`), `cellfab run` killed with -9 and started again while
`cellfab batch start`-ed batches run, then every batch completed, nothing ran twice and
the journal verifies (exit status 0)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(400)
def test_the_readme_kill_loop_in_a_short_form(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.kill_loop", "--batches", "2", "--kills", "2",
         "--max-wait", "1.5", "--seed", "3", "--dir", str(tmp_path / "loop")],
        cwd=ROOT, capture_output=True, text=True, timeout=380,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    assert "kill -9 #1" in out
    assert "kill loop: 2 of 2 batches completed; nothing ran twice" in out
    assert "0 more than once, 0 unknown to the journal, 0 journaled but never started" in out
    assert "cellfab journal verify: verify: ok" in out
