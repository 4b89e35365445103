"""Fixtures of the libmodbus interoperability tests (tests/interop/cellq_c).

Owns: building the C programs once per session (``make -C`` this folder into a temporary
directory; the tests skip with the reason when make, a C compiler or libmodbus-dev is
missing), starting the C analyzer on an ephemeral port, starting ``cellfab sim`` as a
user would, and running a program to its end with its output kept for the report.
Nothing here imports cellfab: these tests treat our code as a black box.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).parent
REPO = HERE.parents[2]
HANG_GUARD = 60.0  # wall seconds for a process to say where it listens; only a hang guard
RUN_GUARD = 600.0  # wall seconds for a whole check or suite run; only a hang guard
TIME_SCALE = 3600  # process seconds per wall second: a 15 min assay takes 0.25 s


@dataclass(frozen=True)
class CPrograms:
    analyzer: Path
    check: Path


def _compiler() -> str | None:
    for name in (os.environ.get("CC", ""), "cc", "gcc"):
        if name and shutil.which(name):
            return name
    return None


def _missing() -> str | None:
    """Why the C programs cannot be built here, or None."""
    if shutil.which("make") is None:
        return "make is not installed"
    if _compiler() is None:
        return "no C compiler (gcc) is installed"
    has_pc = shutil.which("pkg-config") is not None
    found = has_pc and subprocess.run(["pkg-config", "--exists", "libmodbus"]).returncode == 0
    if not found and not Path("/usr/include/modbus/modbus.h").exists():
        return (
            "libmodbus-dev is not installed (Debian: apt-get install libmodbus-dev; "
            "`make test` installs it when run as root)"
        )
    return None


@pytest.fixture(scope="session")
def c_programs(tmp_path_factory: pytest.TempPathFactory) -> CPrograms:
    why = _missing()
    if why:
        pytest.skip(why)
    out = tmp_path_factory.mktemp("cellq_c")
    built = subprocess.run(
        ["make", "-s", "-C", str(HERE), f"OUT={out}", f"CC={_compiler()}"],
        capture_output=True,
        text=True,
        timeout=RUN_GUARD,
    )
    assert built.returncode == 0, f"building the C programs failed:\n{built.stderr}"
    assert not built.stderr.strip(), f"compiler warnings (-Wall -Wextra):\n{built.stderr}"
    return CPrograms(out / "cellq_analyzer", out / "cellq_check")


def _first_lines(proc: subprocess.Popen[bytes], until: str, what: str) -> list[str]:
    """Lines of ``proc``'s stdout up to one containing ``until`` (hang-guarded). Reads
    the pipe unbuffered, so select() sees every byte the process wrote."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    while until.encode() not in data or not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], HANG_GUARD)
        chunk = os.read(fd, 4096) if ready else b""
        if not chunk:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{what} did not start; it wrote {data!r}")
        data += chunk
    return data.decode().splitlines()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=HANG_GUARD)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def c_analyzer(c_programs: CPrograms) -> Iterator[str]:
    """The C analyzer on an ephemeral port: its ``host:port``."""
    proc = subprocess.Popen(
        [str(c_programs.analyzer), "--port", "0", "--time-scale", str(TIME_SCALE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        (addr,) = _first_lines(proc, ":", "the C analyzer")
        yield addr
    finally:
        _stop(proc)
        assert proc.stderr is not None
        errors = proc.stderr.read().decode()
        assert proc.returncode in (0, -signal.SIGTERM), errors


@dataclass(frozen=True)
class Sim:
    shuttle: str
    cellq: str
    balance: str


@pytest.fixture(scope="module")
def cellfab_sim() -> Iterator[Sim]:
    """``cellfab sim`` as README "Running the twins" says, on ephemeral ports."""
    cellfab = Path(sys.executable).parent / "cellfab"
    command = [str(cellfab)] if cellfab.exists() else [sys.executable, "-m", "daemon.cli"]
    proc = subprocess.Popen(
        [
            *command,
            "sim",
            "--time-scale",
            str(TIME_SCALE),
            "--security",
            "none",
            "--cellq-port",
            "0",
            "--shuttle-port",
            "0",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        lines = _first_lines(proc, "balance", "cellfab sim")
        where = dict(line.split()[:2] for line in lines if len(line.split()) == 2)
        yield Sim(where["shuttle"], where["cellq"], where["balance"])
    finally:
        _stop(proc)


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str

    def lines(self, verdict: str) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith(verdict)]


def run(args: list[str], env: dict[str, str] | None = None) -> Run:
    """Run a check or a suite to its end; its output is printed for the report."""
    done = subprocess.run(
        args,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=RUN_GUARD,
    )
    print(done.stdout)
    return Run(done.returncode, done.stdout)


@pytest.fixture
def run_program() -> Callable[..., Run]:
    return run
