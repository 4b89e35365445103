"""The layer contract of `make lint` (import-linter, pyproject.toml) holds, and breaks.

A copy of the three packages gets one module that crosses a layer; `lint-imports`
must then fail naming the contract, so the contract cannot quietly stop checking.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import HANG_GUARD

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("daemon", "drivers", "simulators")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter not installed")


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT, "--no-cache"], cwd=tree, capture_output=True, text=True, timeout=HANG_GUARD
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__py*"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_repository_keeps_every_contract() -> None:
    proc = lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize(
    ("module", "code", "contract"),
    [
        ("drivers/_cross.py", "from daemon.recipe import load_recipe", "drivers import neither"),
        ("drivers/_cross.py", "import simulators.world", "drivers import neither"),
        ("simulators/_cross.py", "from drivers.base import InstrumentError", "simulators import"),
        ("simulators/_cross.py", "from drivers import modbus", "simulators import"),
        ("simulators/_cross.py", "from daemon import diagnostics", "simulators import"),
        ("daemon/recipe/_cross.py", "import simulators.world", "only the sim and demo"),
        ("daemon/cli/_cross.py", "from simulators.cell import run_sim", "only the sim and demo"),
    ],
)
def test_a_module_crossing_a_layer_breaks_the_contract(
    tree: Path, module: str, code: str, contract: str
) -> None:
    assert lint(tree).returncode == 0  # the copy is clean before the crossing
    (tree / module).write_text(f'"""A layer crossing."""\n\n{code}\n')
    proc = lint(tree)
    assert proc.returncode == 1, proc.stdout
    broken = [line for line in proc.stdout.splitlines() if " BROKEN" in line]
    assert any(line.startswith(contract) for line in broken), proc.stdout
    assert module.removesuffix(".py").replace("/", ".") in proc.stdout
