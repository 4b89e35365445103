"""The `cellfab` command as a package: lazy command groups and one logging format.

Each case runs in a fresh interpreter (what was imported, how logging was configured
are process-wide facts), with a hang guard.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import CELLFAB, HANG_GUARD

ROOT = Path(__file__).resolve().parents[1]
LENTI = str(ROOT / "recipes" / "car_t_lentiviral.yaml")
HEAVY = ("asyncua", "pymodbus", "serial", "simulators", "cryptography")


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=HANG_GUARD,
    )


def loaded_after(argv: list[str]) -> tuple[int, list[str]]:
    """Exit status of ``cellfab argv`` and the heavy top-level packages it imported."""
    proc = python(
        f"""
        import sys
        from daemon.cli import main
        try:
            rc = main({argv!r})
        except SystemExit as exc:  # --help
            rc = exc.code
        heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {set(HEAVY)!r})
        print("HEAVY", ",".join(heavy))
        sys.exit(rc)
        """
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("HEAVY"))
    return proc.returncode, [m for m in line.removeprefix("HEAVY").strip().split(",") if m]


def test_recipe_validate_imports_no_protocol_library_and_no_twin() -> None:
    assert loaded_after(["recipe", "validate", LENTI]) == (0, [])


def test_help_names_every_group_without_loading_any() -> None:
    rc, heavy = loaded_after(["--help"])
    assert (rc, heavy) == (0, [])
    out = python("from daemon.cli import main; main(['--help'])").stdout
    for group in ("recipe", "sim", "demo"):
        assert re.search(rf"^\s+{group}\s+\w", out, re.M), out


def test_sim_and_demo_load_their_twins_only_when_they_are_the_command() -> None:
    rc, heavy = loaded_after(["demo", "--help"])
    assert rc == 0
    assert {"asyncua", "simulators"} <= set(heavy)


# --------------------------------------------------------------------------- logging
EMIT = """
    import logging, structlog
    from daemon.cli import logs
    logs.configure(json={json}, level={level!r})
    log = structlog.get_logger("cellfab.test")
    log.debug("quiet_detail", n=1)
    log.info("unit_started", unit="INC01", task_id="B1/expand/1")
    log.warning("link_lost", attempt=2)
    logging.getLogger("asyncua.client").info("chatty %s", "hello")
    logging.getLogger("pymodbus.logging").warning("from %s", "pymodbus")
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("step_failed")
"""


def emit(*, json_: bool, level: str) -> str:
    proc = python(EMIT.format(json=json_, level=level))
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_log_json_gives_one_parsable_object_per_line_for_ours_and_third_party() -> None:
    records = [json.loads(line) for line in emit(json_=True, level="info").splitlines()]
    assert [r["event"] for r in records] == [
        "unit_started",
        "link_lost",
        "from pymodbus",
        "step_failed",
    ]
    started = records[0]
    assert (started["level"], started["logger"], started["unit"]) == (
        "info",
        "cellfab.test",
        "INC01",
    )
    assert started["timestamp"].endswith("Z")
    assert (records[2]["level"], records[2]["logger"]) == ("warning", "pymodbus.logging")
    assert records[3]["exception"][0]["exc_type"] == "ZeroDivisionError"


def test_log_level_filters_ours_and_debug_opens_the_third_party_loggers() -> None:
    events = [json.loads(x)["event"] for x in emit(json_=True, level="warning").splitlines()]
    assert events == ["link_lost", "from pymodbus", "step_failed"]
    events = [json.loads(x)["event"] for x in emit(json_=True, level="debug").splitlines()]
    assert events[:4] == ["quiet_detail", "unit_started", "link_lost", "chatty hello"]


def test_plain_key_value_lines_when_stderr_is_not_a_terminal() -> None:
    lines = emit(json_=False, level="info").splitlines()
    assert re.fullmatch(
        r"timestamp=\S+Z level=info logger=cellfab\.test event=unit_started unit=INC01 "
        r"task_id=B1/expand/1",
        lines[0],
    ), lines[0]
    assert re.match(r"timestamp=\S+ level=warning logger=pymodbus.logging event=", lines[2])
    assert "ZeroDivisionError" in "\n".join(lines[3:])


def test_readable_console_lines_on_a_terminal() -> None:
    leader, follower = pty.openpty()
    code = textwrap.dedent(EMIT.format(json=False, level="info"))
    with subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=follower) as proc:
        os.close(follower)
        out = b""
        try:
            while chunk := os.read(leader, 65536):
                out += chunk
        except OSError:  # EIO: the child closed the terminal
            pass
        finally:
            os.close(leader)
        assert proc.wait(HANG_GUARD) == 0
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.decode())  # colours off for the match
    assert re.search(r"\[info\s*\] unit_started\s+\[cellfab\.test\]", text), text
    assert "unit=INC01" in text
    assert "event=" not in text  # the console renderer, not key=value


def test_cellfab_log_json_option_reaches_the_command(tmp_path: Path) -> None:
    exe = Path(CELLFAB)
    if not exe.exists():
        pytest.skip("console script not installed")
    proc = subprocess.run(
        [exe, "--log-json", "--log-level", "debug", "recipe", "validate", LENTI],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )
    assert proc.returncode == 0, proc.stderr
    (record,) = [json.loads(line) for line in proc.stderr.splitlines()]
    assert (record["event"], record["recipe"]) == ("recipe_valid", "car_t_lentiviral")
