"""Operations tests: systemd notifications, the unit file, metrics and JSON logs of the
real daemon against the session's twins (tests/support/daemon.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops.notify_support import Listener


@pytest.fixture
def notify_socket() -> Iterator[Listener]:
    """A real AF_UNIX datagram socket, as systemd's $NOTIFY_SOCKET (in a short folder:
    a socket path must fit sun_path)."""
    with tempfile.TemporaryDirectory(prefix="cf-", dir="/tmp") as folder:
        listener = Listener(Path(folder) / "notify")
        try:
            yield listener
        finally:
            listener.close()
