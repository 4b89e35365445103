"""build_drivers: the one mapping from a site to driver objects. Unit tests construct
them without connecting; one test connects drivers built from sim_site to real twins."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from daemon.config import sim_site
from daemon.config.build import build_drivers, security_config
from drivers.base import Analyzer, Shuttle
from drivers.modbus import ModbusAnalyzer, RtuEndpoint, TcpEndpoint
from drivers.opcua import OpcUaShuttle, SecurityConfig, SecurityConfigError
from drivers.serial import SerialBalance
from simulators.cell import SimCell, SimConfig
from tests.config.conftest import BASE, Check
from tests.support import HANG_GUARD


def test_one_driver_per_instrument_by_name(check: Check) -> None:
    instruments = build_drivers(check.site())
    assert list(instruments.shuttles) == ["shuttle1", "shuttle2"]
    assert list(instruments.analyzers) == ["cellq1", "cellq2"]
    assert list(instruments.balances) == ["balance1"]
    assert list(instruments.by_name) == ["shuttle1", "shuttle2", "cellq1", "cellq2", "balance1"]
    for name, driver in instruments.by_name.items():
        assert driver.name == name
    assert all(isinstance(s, Shuttle) for s in instruments.shuttles.values())
    assert all(isinstance(a, Analyzer) for a in instruments.analyzers.values())


def test_shuttles_get_their_url_and_security(check: Check) -> None:
    shuttles = build_drivers(check.site()).shuttles
    secure, dev = shuttles["shuttle1"], shuttles["shuttle2"]
    assert isinstance(secure, OpcUaShuttle) and isinstance(dev, OpcUaShuttle)
    assert secure.url == "opc.tcp://10.0.0.5:4840/shuttle"
    pki = check.folder / "pki"
    assert secure.security == SecurityConfig(
        policy="Basic256Sha256",
        mode="SignAndEncrypt",
        client_certificate=pki / "client.pem",
        client_private_key=pki / "client.key",
        server_certificate=pki / "shuttle1.der",
        trust_store=pki / "trusted",
    )
    assert dev.security == SecurityConfig.insecure()


def test_analyzers_get_their_wire_and_device_id(check: Check) -> None:
    text = BASE.replace("    rtu: {", "    device_id: 7\n    rtu: {").replace(
        "parity: N, stopbits: 1", "parity: E, stopbits: 2"
    )
    analyzers = build_drivers(check.site(text)).analyzers
    tcp, rtu = analyzers["cellq1"], analyzers["cellq2"]
    assert isinstance(tcp, ModbusAnalyzer) and isinstance(rtu, ModbusAnalyzer)
    assert tcp.endpoint == TcpEndpoint("10.0.0.12", 5020)
    assert tcp.settings.device_id == 1
    assert rtu.endpoint == RtuEndpoint("/dev/ttyUSB0", 19200, 8, "E", 2)
    assert rtu.settings.device_id == 7


def test_balances_get_their_device(check: Check) -> None:
    balance = build_drivers(check.site()).balances["balance1"]
    assert isinstance(balance, SerialBalance)
    assert balance.port == "/dev/ttyUSB1"


def test_aes_policy_and_revocation_reach_the_driver(check: Check) -> None:
    text = BASE.replace("policy: Basic256Sha256", "policy: Aes256_Sha256_RsaPss").replace(
        "      trust: pki/trusted", "      trust: pki/trusted\n      revocation: pki/trusted"
    )
    config = security_config(check.site(text).shuttles[0].security)
    assert config.policy == "Aes256_Sha256_RsaPss"
    assert config.revocation_dir == check.folder / "pki/trusted"
    config.validate("shuttle1")  # the driver's own check accepts what the site let through


def test_a_security_file_gone_since_loading_is_the_drivers_error(check: Check) -> None:
    site = check.site()
    (check.folder / "pki/client.pem").unlink()
    with pytest.raises(SecurityConfigError, match="client_certificate"):
        build_drivers(site)


async def test_drivers_built_from_a_sim_site_talk_to_the_twins(tmp_path: Path) -> None:
    async with SimCell(SimConfig(time_scale=3600)) as cell:
        site = sim_site(cell.endpoints(), 3600, tmp_path / "journal.sqlite")
        instruments = build_drivers(site)
        shuttle = instruments.shuttles["shuttle1"]
        analyzer = instruments.analyzers["cellq1"]
        balance = instruments.balances["balance1"]
        async with asyncio.timeout(HANG_GUARD), shuttle, analyzer, balance:
            units = await shuttle.units()
            assert "INC01" in units and "expansion" in units["INC01"].capabilities
            status = await analyzer.status()
            assert status.free_slots == 16
            assert (await balance.weight_now()).grams == pytest.approx(0.0, abs=1.0)
