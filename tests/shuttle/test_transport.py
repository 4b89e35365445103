"""Transport, ports, twin controls, security and a third-party client against the shuttle twin."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import (
    SecurityPolicyAes256Sha256RsaPss,
    SecurityPolicyBasic256Sha256,
)

from simulators.certs import ensure_certificate
from simulators.clock import Clock
from simulators.shuttle import ShuttleTwin
from simulators.world import World

from .conftest import HANG, LONG, SCALE, SHORT, Session, ShuttleClient, fresh

S = ua.VariantType.String


@pytest.fixture
def slow(session: Session) -> Iterator[None]:
    """One process second per wall second: a move takes a minute, long enough to look at."""
    session.clock.scale = 1.0
    try:
        yield
    finally:
        session.clock.scale = SCALE


async def insert(sc: ShuttleClient, cartridge: str, cells: float = 1e8) -> str:
    return await sc.twin_status(
        "InsertCartridge",
        ua.Variant(cartridge, S),
        ua.Variant(cells, ua.VariantType.Double),
        ua.Variant(90.0, ua.VariantType.Double),
    )


async def test_move_empties_the_source_at_once_and_fills_the_destination_on_arrival(
    sc: ShuttleClient, twin: Any, session: Session, slow: None
) -> None:
    await sc.empty_unit("INC12")
    await sc.clear_load_port()
    cart = fresh("C")
    assert await insert(sc, cart) == "Good"
    assert await sc.read("LoadPort", "CartridgeId") == cart
    task = fresh("mv/")
    run_id = await sc.call(("Transport",), "Move", cart, "INC12", task)
    assert isinstance(run_id, str) and 0 < len(run_id) <= 64
    assert await sc.read("LoadPort", "CartridgeId") == ""
    assert await sc.unit_read("INC12", "CartridgeId") == ""
    assert await sc.read("Transport", "State") == "Moving"
    assert await sc.read("Transport", "TaskId") == task
    assert session.world.cartridges[cart].location == "Transport"
    # the LoadPort stays reserved for the moving cartridge
    assert await insert(sc, fresh("C")) == "BadInvalidState"
    # one move at a time
    status = await sc.status(("Transport",), "Move", cart, "INC13", fresh("mv/"))
    assert status == "BadInvalidState"
    # idempotent by TaskId, whatever the other arguments
    assert await sc.call(("Transport",), "Move", "bad id!", "Nowhere", task) == run_id
    assert twin.started_moves[task] == 1
    session.clock.scale = SCALE
    await sc.wait_for(("Transport", "State"), lambda v: v == "Idle")
    assert await sc.unit_read("INC12", "CartridgeId") == cart
    assert session.world.cartridges[cart].location == "INC12"
    assert twin.started_moves[task] == 1


async def test_move_refusals(sc: ShuttleClient) -> None:
    a = await sc.load("INC13")
    await sc.clear_load_port()
    b = fresh("C")
    assert await insert(sc, b) == "Good"
    move = ("Transport",)
    assert await sc.status(move, "Move", "bad id!", "INC14", fresh("m")) == "BadInvalidArgument"
    assert await sc.status(move, "Move", a, "INC99", fresh("m")) == "BadInvalidArgument"
    assert await sc.status(move, "Move", a, "Transport", fresh("m")) == "BadInvalidArgument"
    assert await sc.status(move, "Move", a, "INC14", "bad task!") == "BadInvalidArgument"
    assert await sc.status(move, "Move", fresh("none"), "INC14", fresh("m")) == "BadNoMatch"
    # the destination holds a cartridge (a unit, or the LoadPort)
    assert await sc.status(move, "Move", b, "INC13", fresh("m")) == "BadInvalidState"
    assert await sc.status(move, "Move", a, "LoadPort", fresh("m")) == "BadInvalidState"
    assert await sc.status(move, "Move", a, "INC13", fresh("m")) == "BadInvalidState"
    # the source unit is Running or Held
    task = fresh("T")
    await sc.start("INC13", LONG, task, a)
    assert await sc.status(move, "Move", a, "INC14", fresh("m")) == "BadInvalidState"
    await sc.unit_call("INC13", "Hold", task)
    assert await sc.status(move, "Move", a, "INC14", fresh("m")) == "BadInvalidState"
    assert await sc.unit_read("INC13", "CartridgeId") == a
    await sc.unit_call("INC13", "Stop", task)
    # a Complete unit becomes Idle when its cartridge leaves
    await sc.empty_unit("INC14")
    await sc.move(a, "INC14")
    assert await sc.unit_read("INC13", "State") == "Idle"
    assert await sc.unit_read("INC13", "CartridgeId") == ""
    assert await sc.unit_read("INC14", "CartridgeId") == a
    assert await sc.read("Transport", "State") == "Idle"


async def test_output_port_and_remove_cartridge(sc: ShuttleClient, session: Session) -> None:
    await sc.clear_load_port()
    cart = fresh("C")
    assert await insert(sc, cart) == "Good"
    await sc.move(cart, "OutputPort")
    assert (await sc.read("OutputPort", "CartridgeIds"))[-1] == cart
    assert await sc.read("LoadPort", "CartridgeId") == ""
    # a cartridge at the OutputPort has left the shuttle
    status = await sc.status(("Transport",), "Move", cart, "INC15", fresh("m"))
    assert status == "BadNoMatch"
    assert await sc.twin_status("RemoveCartridge", ua.Variant("bad id!", S)) == "BadInvalidArgument"
    assert await sc.twin_status("RemoveCartridge", ua.Variant(cart, S)) == "Good"
    assert cart not in await sc.read("OutputPort", "CartridgeIds")
    assert session.world.cartridges[cart].location == "Removed"
    assert await sc.twin_status("RemoveCartridge", ua.Variant(cart, S)) == "BadNoMatch"
    # an id is used for ever
    assert await insert(sc, cart) == "BadInvalidArgument"


async def test_output_port_keeps_order_oldest_first(sc: ShuttleClient) -> None:
    ids = []
    for _ in range(3):
        await sc.clear_load_port()
        cart = fresh("C")
        assert await insert(sc, cart) == "Good"
        await sc.move(cart, "OutputPort")
        ids.append(cart)
    out = await sc.read("OutputPort", "CartridgeIds")
    assert [c for c in out if c in ids] == ids


async def test_transport_fault_puts_the_cartridge_back(
    sc: ShuttleClient, session: Session, slow: None
) -> None:
    unit = "INC15"
    session.clock.scale = SCALE
    cart = await sc.load(unit)
    task = fresh("T")
    await sc.start(unit, SHORT, task, cart)
    await sc.wait_unit(unit, "State", "Complete")
    session.clock.scale = 1.0
    await sc.call(("Transport",), "Move", cart, "OutputPort", fresh("mv/"))
    assert await sc.unit_read(unit, "CartridgeId") == ""
    assert await sc.unit_read(unit, "State") == "Idle"
    args = [ua.Variant("Transport", S), ua.Variant(3, ua.VariantType.UInt32), ua.Variant("jam", S)]
    assert await sc.twin_status("InjectFault", *args) == "Good"
    assert await sc.read("Transport", "State") == "Faulted"
    assert await sc.read("Transport", "FaultCode") == 3
    assert await sc.read("Transport", "FaultText") == "jam"
    assert await sc.unit_read(unit, "CartridgeId") == cart  # back where it was
    assert await sc.unit_read(unit, "State") == "Idle"  # a unit that became Idle stays Idle
    assert cart not in await sc.read("OutputPort", "CartridgeIds")
    status = await sc.status(("Transport",), "Move", cart, "OutputPort", fresh("mv/"))
    assert status == "BadInvalidState"
    assert await sc.status(("Transport",), "Clear") == "Good"
    assert await sc.read("Transport", "State") == "Idle"
    assert await sc.read("Transport", "FaultCode") == 0
    assert await sc.status(("Transport",), "Clear") == "BadInvalidState"


async def test_insert_cartridge_rules(sc: ShuttleClient, session: Session) -> None:
    await sc.clear_load_port()
    assert await insert(sc, "bad id!") == "BadInvalidArgument"
    assert await insert(sc, "x" * 33) == "BadInvalidArgument"
    assert await insert(sc, fresh("C"), cells=-1.0) == "BadInvalidArgument"
    cart = fresh("C")
    assert await insert(sc, cart) == "Good"
    assert session.world.cartridges[cart].viable_cells == 1e8
    assert await insert(sc, fresh("C")) == "BadInvalidState"  # the port is taken
    assert await insert(sc, cart) == "BadInvalidArgument"  # used
    assert await sc.read("LoadPort", "CartridgeId") == cart
    wrong_type = [ua.Variant(cart, S), ua.Variant(1, ua.VariantType.Int32), ua.Variant(90.0)]
    assert await sc.twin_status("InsertCartridge", *wrong_type) == "BadInvalidArgument"


async def test_time_scale_is_the_clock_scale(sc: ShuttleClient, session: Session) -> None:
    node = await sc.twin_obj.get_child(f"{sc.tns}:TimeScale")
    assert await node.read_data_type() == ua.NodeId(ua.VariantType.Double.value)
    try:
        await node.write_value(ua.Variant(1234.5, ua.VariantType.Double))
        assert session.clock.scale == 1234.5
        assert await node.read_value() == 1234.5
        with pytest.raises(ua.UaStatusCodeError):
            await node.write_value(ua.Variant(-1.0, ua.VariantType.Double))
        assert session.clock.scale == 1234.5
    finally:
        await node.write_value(ua.Variant(SCALE, ua.VariantType.Double))
    assert session.clock.scale == SCALE


async def test_none_twin_offers_only_the_none_endpoint(sc: ShuttleClient) -> None:
    endpoints = await sc.client.get_endpoints()
    assert {e.SecurityPolicyUri.rsplit("#", 1)[-1] for e in endpoints} == {"None"}


async def test_standard_command_line_client_reads_the_twin(sc: ShuttleClient, twin: Any) -> None:
    uaread = Path(sys.executable).with_name("uaread")
    assert uaread.exists()
    proc = await asyncio.create_subprocess_exec(
        str(uaread),
        "-u",
        twin.url,
        "-n",
        f"ns={sc.ns};s=Shuttle.Identification.SerialNumber",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(HANG * 2):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert twin.serial_number in out.decode()


# ------------------------------------------------------------------ security
@pytest.fixture
async def secure_twin(tmp_path: Path) -> AsyncIterator[ShuttleTwin]:
    twin = ShuttleTwin(
        World(1), Clock(3600), security="secure", cert_dir=tmp_path / "pki", serial_number="SEC-1"
    )
    await twin.start()
    try:
        yield twin
    finally:
        await twin.stop()


async def _secure_client(twin: ShuttleTwin, pki: Path, name: str, policy: Any) -> Client:
    uri = f"urn:cellfab:test:{name}"
    pair = ensure_certificate(pki, name, uri, server=False)
    client = Client(twin.url, timeout=10)
    client.application_uri = uri
    await client.set_security(
        policy,
        str(pair.cert),
        str(pair.key),
        server_certificate=str(twin.server_certificate_path),
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    return client


async def test_trusted_client_connects_untrusted_is_refused(
    secure_twin: ShuttleTwin, tmp_path: Path
) -> None:
    assert secure_twin.server_certificate_path.is_file()
    pki = tmp_path / "clients"
    trusted = ensure_certificate(pki, "trusted", "urn:cellfab:test:trusted", server=False)
    shutil.copy(trusted.cert, secure_twin.trusted_clients_dir / "trusted.der")
    for policy in (SecurityPolicyBasic256Sha256, SecurityPolicyAes256Sha256RsaPss):
        client = await _secure_client(secure_twin, pki, "trusted", policy)
        async with client:
            ns = await client.get_namespace_index("urn:cellfab:shuttle:v1")
            shuttle = await client.nodes.objects.get_child(f"{ns}:Shuttle")
            state = await shuttle.get_child(f"{ns}:DeviceState")
            assert await state.read_value() == "Operate"
            endpoints = await client.get_endpoints()
            offered = {(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode) for e in endpoints}
            assert offered == {
                ("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt),
                ("Aes256_Sha256_RsaPss", ua.MessageSecurityMode.SignAndEncrypt),
            }
    untrusted = await _secure_client(secure_twin, pki, "stranger", SecurityPolicyBasic256Sha256)
    with pytest.raises(ua.UaStatusCodeError) as refused:
        async with asyncio.timeout(HANG):
            await untrusted.connect()
    assert ua.StatusCode(refused.value.code).name == "BadCertificateUntrusted"
    untrusted.disconnect_socket()
    with pytest.raises(Exception):  # noqa: B017 - no None endpoint on a secure shuttle
        async with asyncio.timeout(HANG), Client(secure_twin.url, timeout=5) as plain:
            await plain.nodes.objects.read_browse_name()


async def test_both_offers_none_and_the_two_secure_policies(tmp_path: Path) -> None:
    twin = ShuttleTwin(World(2), Clock(3600), security="both", cert_dir=tmp_path / "pki")
    await twin.start()
    try:
        async with Client(twin.url, timeout=10) as client:
            endpoints = await client.get_endpoints()
        offered = {(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode) for e in endpoints}
        assert offered == {
            ("None", ua.MessageSecurityMode.None_),
            ("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt),
            ("Aes256_Sha256_RsaPss", ua.MessageSecurityMode.SignAndEncrypt),
        }
        assert all(e.EndpointUrl == twin.url for e in endpoints)  # the bound port, not 0
        cert = twin.server_certificate_path.read_bytes()
    finally:
        await twin.stop()
    # the certificate made on the first start is reused by the next one
    again = ShuttleTwin(World(2), Clock(3600), security="secure", cert_dir=tmp_path / "pki")
    await again.start()
    try:
        assert again.server_certificate_path.read_bytes() == cert
    finally:
        await again.stop()
