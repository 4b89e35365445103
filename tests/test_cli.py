"""The `cellfab sim` and `cellfab demo` commands, run as a user runs them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import serial
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient

from drivers import icd
from tests.support import CELLFAB

HANG = 60.0


def _read_endpoints(proc: subprocess.Popen[str]) -> dict[str, str]:
    endpoints: dict[str, str] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        if m := re.match(r"\s+(shuttle|cellq|balance)\s+(\S+)$", line):
            endpoints[m[1]] = m[2]
        if line.startswith("Ctrl-C or SIGTERM stops."):
            return endpoints
    raise AssertionError(f"cellfab sim ended before it listened: {proc.wait()}")


@pytest.fixture
def sim(tmp_path: Path):
    proc = subprocess.Popen(
        [
            *(CELLFAB, "sim", "--time-scale", "3600", "--seed", "3", "--shuttle-port", "0"),
            *("--cellq-port", "0", "--cert-dir", str(tmp_path / "pki")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc, _read_endpoints(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(HANG)


async def test_sim_serves_the_three_twins_to_plain_clients_and_stops_on_sigterm(sim) -> None:
    proc, endpoints = sim
    assert set(endpoints) == {"shuttle", "cellq", "balance"}

    async with Client(endpoints["shuttle"], timeout=10) as client:
        ns = await client.get_namespace_index(icd.SHUTTLE_NS)
        shuttle = await client.nodes.objects.get_child(ua.QualifiedName("Shuttle", ns))
        state = await shuttle.get_child(ua.QualifiedName("DeviceState", ns))
        assert await state.read_value() == "Operate"

    host, port = endpoints["cellq"].rsplit(":", 1)
    modbus = AsyncModbusTcpClient(host, port=int(port), timeout=5, retries=0)
    await modbus.connect()
    try:
        rr = await modbus.read_input_registers(0, count=icd.STATUS_REGS, device_id=1)
        assert not rr.isError()
        assert rr.registers[icd.IR_ICD_VERSION] == icd.ICD_VERSION
    finally:
        modbus.close()

    with serial.Serial(endpoints["balance"], 9600, timeout=5) as port_:
        port_.write(b"XYZ\r\n")
        assert port_.readline() == b"ES\r\n"

    proc.send_signal(signal.SIGTERM)
    out, _err = proc.communicate(timeout=HANG)
    assert proc.returncode == 0
    assert "cellfab sim: stopped" in out
    assert (Path(os.fspath(proc.args[-1])) / "shuttle.der").exists()  # certificate made


def test_sim_on_a_taken_port_says_so_and_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [
                *(CELLFAB, "sim", "--cellq-port", str(port), "--shuttle-port", "0"),
                *("--cert-dir", str(tmp_path / "pki"), "--security", "none"),
            ],
            capture_output=True,
            text=True,
            timeout=HANG,
        )
    assert proc.returncode == 1
    assert f"cellfab sim: error: Cell Q twin on 127.0.0.1:{port} could not start" in proc.stderr
    assert "Traceback" not in proc.stderr


# The demo at a high time scale: as high as the recipes' tightest process-time margin
# allows (transduce: a 30 min program with a 2 h timeout, 135 ms of wall time here,
# against the shuttle twin's 50 ms tick), so the run stays well clear of timeouts.
DEMO_SCALE = "40000"
DEMO_HANG = 400.0  # a hang guard on a loaded machine, never an expectation
RECIPES = ("car_t_lentiviral", "car_t_lentiviral", "car_t_electroporation", "car_t_rapid_3day")


@pytest.mark.timeout(DEMO_HANG + 30)
def test_demo_runs_four_batches_through_a_fault_and_a_restart_as_expected() -> None:
    proc = subprocess.run(
        [CELLFAB, "demo", "--time-scale", DEMO_SCALE, "--seed", "0"],
        capture_output=True,
        text=True,
        timeout=DEMO_HANG,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = out.splitlines()

    # stdout is not a terminal: plain lines, one per event, as they happen
    assert any(re.search(r"\] loader puts cartridge C-PT0001 at the LoadPort", x) for x in lines)
    assert any(
        re.search(r"\] B\d{4}-\w{3}   qa_release confirmed by qa\.ruiz \(qa\)", x) for x in lines
    )
    assert any(
        re.search(r"\] FAULT: INC\d\d breaks down during B\d{4}-\w{3}'s expansion", x)
        for x in lines
    )

    # the summary: four batches, each Complete and released, with its QC values
    summary = lines[lines.index(next(x for x in lines if x.startswith("Summary: 4 batches"))) :]
    heads = [
        m for x in summary if (m := re.match(r"(B\d{4}-\w{3})  (\w+) 1\.0  (C-PT\d{4})  (.*)$", x))
    ]
    assert [m[2] for m in heads] == list(RECIPES)
    assert [m[4] for m in heads] == ["Complete, released"] * 4
    text = "\n".join(summary)
    assert text.count("QC release_") == 4
    assert re.search(r"QC count +count [0-9.e+]+ viable/mL, viability [0-9.]+%", text)
    assert re.search(
        r"CD3 [0-9.]+%, CAR\+ [0-9.]+%, endotoxin \S+ EU/mL, sterility no growth", text
    )

    # the faulted batch: the injected fault as its deviation, the restart, attempt 2
    faulted = heads[1][1]
    block = text[text.index(faulted) : text.index(heads[2][1])]
    assert re.search(
        r"deviation +unit_fault at expand on INC\d\d: expansion on INC\d\d ended Faulted "
        r"\(fault 31: CO2 supply pressure low\)",
        block,
    )
    assert re.search(r"restart +by sup\.lee \(supervisor\): ", block)
    assert re.search(r"then +expand ran again as attempt 2 on INC\d\d: Complete", block)
    assert text.count(": as expected") == 4
    # no other deviation, but for a hold_max that the time scale made of a few ms of the
    # daemon's own work: shown and excused (daemon.cli.demo_verdict)
    devs = [x for x in summary if x.startswith("    deviation ")]
    assert len([x for x in devs if "unit_fault" in x]) == 1
    others = [x for x in devs if "unit_fault" not in x]
    assert all(" hold_max at " in x for x in others)
    assert text.count("excused)") == len(others)
    assert "every program, move and Cell Q job started once" in text
    assert lines[-1] == "cellfab demo: all 4 batches ended as expected"

    # its temporary folder (journal) is gone after a run that went as expected
    folder = re.search(r"journal in (\S+) ", out)
    assert folder is not None and not Path(folder[1]).exists()


@pytest.mark.timeout(DEMO_HANG + 30)
def test_demo_stops_cleanly_on_ctrl_c_and_keeps_a_journal_that_verifies() -> None:
    proc = subprocess.Popen(
        [CELLFAB, "demo", "--time-scale", DEMO_SCALE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if re.search(r"\] B\d{4}-\w{3} step select", line):
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=DEMO_HANG)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(HANG)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err
    assert "interrupted: the daemon stopped cleanly" in out
    assert len(re.findall(r"^B\d{4}-\w{3}  car_t_\w+: ", out, re.M)) == 4
    kept = re.search(r"journal kept in (\S+)$", out, re.M)
    assert kept is not None
    journal = Path(kept[1]) / "journal.sqlite"
    verify = subprocess.run(
        [CELLFAB, "journal", "verify", "--journal", str(journal)],
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    shutil.rmtree(kept[1])
