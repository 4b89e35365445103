"""Our shuttle twin, as ``cellfab sim`` serves it, checked by a client that is not ours.

``tests/interop/check_twin.js`` is written on node-opcua's client from the ICD 1.1 text
alone (clean room). It starts ``cellfab sim --security none --shuttle-port 0 ...`` itself,
reads the endpoint it prints, and checks the rules of ICD sections 1 and 4 one by one,
printing PASS/FAIL per rule with its section. Every rule must pass.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.interop.interop_support import INTEROP, ROOT, child_env
from tests.support import HANG_GUARD

CHECK_GUARD = 20 * HANG_GUARD  # the whole check; a hang guard only


def _cellfab() -> Path:
    exe = Path(sys.executable).parent / "cellfab"
    if not exe.exists():
        pytest.skip(f"no cellfab next to {sys.executable}: install the project (make lint)")
    return exe


def test_cellfab_sim_passes_a_third_party_client_check(
    node: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pki = tmp_path_factory.getbasetemp().parent / "cellfab-node-pki"
    cmd = [node, str(INTEROP / "check_twin.js"), "--cellfab", str(_cellfab())]
    run = subprocess.run(
        [*cmd, "--time-scale", "3600", "--pki-dir", str(pki)],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=CHECK_GUARD,
        check=False,
    )
    out = run.stdout
    print(out)
    closing = re.search(r"^(\d+) passed, (\d+) failed$", out, re.MULTILINE)
    assert closing, f"no closing line (exit {run.returncode}):\n{out}\n{run.stderr[-3000:]}"
    passed, failed = int(closing.group(1)), int(closing.group(2))
    fails = re.findall(r"^FAIL §[^:]+: (.*)$", out, re.MULTILINE)
    assert len(fails) == failed and passed > 0
    assert run.returncode == (1 if failed else 0)
    assert not fails, f"rules failed: {fails}"
