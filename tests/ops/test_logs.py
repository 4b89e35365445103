"""Logging under systemd: JSON lines, the journal's priority prefix, and only when the
process really is systemd's (each case in a fresh interpreter: logging is per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support import HANG_GUARD

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD_VARS = ("JOURNAL_STREAM", "INVOCATION_ID", "SYSTEMD_EXEC_PID", "NOTIFY_SOCKET")

EMIT = """
    import logging, os, structlog
    from daemon.cli import logs
    {before}
    logs.configure()
    log = structlog.get_logger("cellfab.test")
    structlog.contextvars.bind_contextvars(batch="B0001-AAA", step="expand", task_id="")
    log.info("step started", visit=1)
    structlog.contextvars.bind_contextvars(task_id="B0001-AAA/expand/1")
    log.warning("link lost", instrument="shuttle1")
    logging.getLogger("asyncua.client").error("from %s", "asyncua")
    structlog.contextvars.clear_contextvars()
    log.debug("quiet")
    log.info("ready")
"""


def emit(tmp_path: Path, before: str = "", **env: str) -> list[str]:
    """The stderr lines of EMIT, run with stderr on a file and ``env`` (and none of
    systemd's variables of the environment this test runs in)."""
    out = tmp_path / "stderr.log"
    clean = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARS}
    with out.open("wb") as stderr:
        stat = os.fstat(stderr.fileno())
        values = {k: v.format(dev=stat.st_dev, ino=stat.st_ino) for k, v in env.items()}
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(EMIT.format(before=before))],
            stderr=stderr,
            cwd=ROOT,
            env={**clean, **values},
            timeout=HANG_GUARD,
        )
    lines = out.read_text().splitlines()
    assert proc.returncode == 0, lines
    return lines


def test_on_the_journal_stream_each_line_is_json_after_its_syslog_priority(
    tmp_path: Path,
) -> None:
    lines = emit(tmp_path, JOURNAL_STREAM="{dev}:{ino}")
    assert [line[:3] for line in lines] == ["<6>", "<4>", "<3>", "<6>"]
    records = [json.loads(line[3:]) for line in lines]
    assert [r["event"] for r in records] == ["step started", "link lost", "from asyncua", "ready"]
    started, lost, third_party, ready = records
    assert (started["batch"], started["step"], started["task_id"]) == ("B0001-AAA", "expand", "")
    assert (lost["level"], lost["task_id"]) == ("warning", "B0001-AAA/expand/1")
    assert third_party["batch"] == "B0001-AAA"  # stdlib lines of a batch's task carry it too
    assert "batch" not in ready


def test_a_journal_stream_inherited_by_a_child_whose_stderr_is_elsewhere_is_not_ours(
    tmp_path: Path,
) -> None:
    lines = emit(tmp_path, JOURNAL_STREAM="{dev}:{ino}1", INVOCATION_ID="0123abcd")
    assert lines[0].startswith("timestamp=") and "event=" in lines[0]  # logfmt, not JSON


def test_the_process_systemd_started_logs_json_without_a_prefix_off_the_journal(
    tmp_path: Path,
) -> None:
    own = 'os.environ["SYSTEMD_EXEC_PID"] = str(os.getpid())'  # as systemd sets it
    lines = emit(tmp_path, before=own, INVOCATION_ID="0123abcd")
    records = [json.loads(line) for line in lines]
    assert [r["event"] for r in records] == ["step started", "link lost", "from asyncua", "ready"]
