"""The `cellfab sim` and `cellfab demo` commands, run as a user runs them."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import serial
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient

from daemon.cli.demo import _main as demo_main
from drivers import icd

CELLFAB = str(Path(sys.executable).with_name("cellfab"))
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


async def test_demo_walks_one_cartridge_through_the_cell_with_the_real_drivers() -> None:
    lines: list[str] = []
    args = argparse.Namespace(host="127.0.0.1", time_scale=500000.0, seed=1)
    assert await demo_main(args, lines.append) == 0
    text = "\n".join(lines)
    for step in ("cell_selection", "activation", "expansion", "harvest_wash", "fill_finish"):
        assert f": {step} " in text
    assert re.search(r"cell_count [0-9.e+]+, viability [0-9.]+", text)
    assert re.search(r"balance: last bag 51\.500 g, expected 51\.500 g .*: ok", text)
    assert lines[-1].startswith("done: C-DEMO-0001 at the OutputPort")
