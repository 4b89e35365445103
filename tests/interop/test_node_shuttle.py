"""Our Cell Shuttle conformance suite against an instrument on another OPC UA stack.

``tests/interop/node_shuttle.js`` is a Cell Shuttle written on node-opcua from ICD 1.1
alone (clean room: not from simulators/ or drivers/). The suite runs as a black box in a
subprocess, pointed at it the way the hardware-in-the-loop bench points it at a real
instrument (``CELLFAB_SHUTTLE_URL``, policy None allowed). The node shuttle offers the
ICD section 4 twin controls, so the suite's tests that need the physical world run too
(whether they skip in HIL mode depends on the suite, not on us: the counts are printed).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys

from asyncua import Client, ua

from tests.interop.interop_support import ROOT, child_env
from tests.support import HANG_GUARD

SUITE_GUARD = 20 * HANG_GUARD  # the whole conformance suite; a hang guard only


def _counts(summary: str) -> dict[str, int]:
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}


async def _usage(url: str) -> tuple[int, int]:
    """Sessions the node shuttle has opened (OPC UA Part 5 diagnostics) and the programs
    and moves it has started (ICD 4 Twin/StartedPrograms), read with a plain client."""
    async with Client(url, timeout=10) as client:
        summary = await client.get_node(
            ua.ObjectIds.Server_ServerDiagnostics_ServerDiagnosticsSummary
        ).read_value()
        twin_ns = await client.get_namespace_index("urn:cellfab:twin:v1")
        objects = client.nodes.objects
        node = await objects.get_child([f"{twin_ns}:Twin", f"{twin_ns}:StartedPrograms"])
        return summary.CumulatedSessionCount, len(json.loads(await node.read_value()))


def test_conformance_suite_passes_against_the_node_opcua_shuttle(node_shuttle: str) -> None:
    sessions_before, started_before = asyncio.run(_usage(node_shuttle))
    env = child_env(CELLFAB_SHUTTLE_URL=node_shuttle, CELLFAB_SHUTTLE_ALLOW_NONE="1")
    cmd = [sys.executable, "-m", "pytest", "tests/conformance/shuttle", "-q", "-rfEs"]
    run = subprocess.run(
        [*cmd, "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUITE_GUARD,
        check=False,
    )
    lines = run.stdout.strip().splitlines()
    summary = lines[-1] if lines else "(no output)"
    counts = _counts(summary)
    print(f"conformance suite against node-opcua shuttle {node_shuttle}: {summary}")
    for line in lines:
        if line.startswith(("SKIPPED", "FAILED", "ERROR")):
            print(f"  {line}")
    # the suite drove this instrument, not a twin of its own
    sessions, started = asyncio.run(_usage(node_shuttle))
    print(
        f"  node shuttle: {sessions - sessions_before} sessions, {started - started_before} started"
    )
    assert sessions - sessions_before > 1, "the suite never opened a session on the node shuttle"
    assert counts.get("passed", 0) > 0 and counts.get("error", 0) == 0, summary
    assert counts.get("failed", 0) == 0, f"{summary}\n{run.stdout[-8000:]}\n{run.stderr[-2000:]}"
    assert run.returncode == 0, f"{summary}\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
