"""Run a recipe load as a hostile input would be run: bounded, so a regression fails.

``load_bounded`` loads a file (``load_recipe``) or a text file's content
(``load_recipe_text``) in a fresh interpreter whose address space is capped
(RLIMIT_AS) and under a hang guard: a loader that reads without end, expands without
end or recurses too deep ends in a failed test, not in an eaten machine.
``memory_cap`` caps this process for in-process property tests (a soft limit, raised
back afterwards, generous enough for twins that other tests left running).
"""

from __future__ import annotations

import contextlib
import json
import resource
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import HANG_GUARD

ROOT = Path(__file__).resolve().parents[2]
LOAD_MEMORY = 1 << 30  # address space the child may add to what it has after its imports

_CHILD = r"""
import json, resource, sys
from daemon.recipe import RecipeError, load_recipe, load_recipe_text

def vm_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0

cap = vm_bytes() + int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
mode, arg = sys.argv[1], sys.argv[2]
if mode == "path":
    try:
        recipe, diagnostics = load_recipe(arg), []
    except RecipeError as exc:
        recipe, diagnostics = None, exc.diagnostics
else:
    with open(arg, encoding="utf-8") as f:
        text = f.read()
    recipe, diagnostics = load_recipe_text(text, "gen.yaml")
print(json.dumps({"ok": recipe is not None, "diagnostics": [d.format() for d in diagnostics]}))
"""


@dataclass(frozen=True)
class Answer:
    ok: bool
    diagnostics: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.diagnostics)


def load_bounded(path: Path | str, *, as_text: bool = False) -> Answer:
    """The loader's answer for ``path`` (a file, or with ``as_text`` its content)."""
    mode = "text" if as_text else "path"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, str(path), str(LOAD_MEMORY)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=HANG_GUARD,
    )
    assert proc.returncode == 0, f"the loader crashed:\n{proc.stderr[-3000:]}"
    answer = json.loads(proc.stdout.splitlines()[-1])
    return Answer(answer["ok"], answer["diagnostics"])


@contextlib.contextmanager
def memory_cap(extra: int = 2 << 30) -> Iterator[None]:
    """Cap this process's address space at its current size plus ``extra``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as f:
        vm = next(int(x.split()[1]) * 1024 for x in f if x.startswith("VmSize:"))
    cap = vm + extra if hard == resource.RLIM_INFINITY else min(vm + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
