"""Fixtures of the interoperability tests: Node.js with the pinned node-opcua packages,
and the node-opcua Cell Shuttle. Without ``node`` (>= 20) or ``tests/interop/node_modules``
(``make interop`` runs ``npm ci`` there) these tests skip and say which is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.interop.interop_support import INTEROP, node_missing, spawn, stop


@pytest.fixture(scope="session")
def node() -> str:
    reason = node_missing()
    if reason:
        pytest.skip(reason)
    path = shutil.which("node")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def node_shuttle(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The node-opcua Cell Shuttle on an ephemeral port at a high time scale: its URL."""
    log_dir = tmp_path_factory.mktemp("node-shuttle")
    pki = tmp_path_factory.getbasetemp().parent / "cellfab-node-pki"  # reused: certs are slow
    with open(log_dir / "stderr.log", "w") as err:
        cmd = [node, str(INTEROP / "node_shuttle.js"), "--port", "0", "--time-scale", "36000"]
        child = spawn([*cmd, "--pki-dir", str(pki), "--watch-stdin"], err)
        try:
            url = child.wait_for(r"^opc\.tcp://\S+$").group(0)
            yield url
        finally:
            stop(child)
    returncode = child.proc.returncode
    assert returncode in (0, -15), f"node shuttle exited {returncode}: see {log_dir}"
