"""Transport, ports, twin controls, security and a third-party client against the shuttle twin."""

from __future__ import annotations

import asyncio
import shutil
import sys
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
from tests.support import HANG_GUARD, fresh
from tests.support.shuttle import (
    LONG,
    SCALE,
    SecureSetup,
    ShuttleClient,
    ShuttleSession,
    short,
    slowly,
)

S = ua.VariantType.String


async def test_move_empties_the_source_at_once_and_fills_the_destination_on_arrival(
    shuttle_ua: ShuttleClient,
    shuttle_twin: ShuttleTwin,
    shuttle_session: ShuttleSession,
) -> None:
    await shuttle_ua.empty_unit("INC12")
    await shuttle_ua.clear_load_port()
    with slowly(shuttle_session):  # a move takes a minute: long enough to look at
        await _look_at_a_move(shuttle_ua, shuttle_session)


async def _look_at_a_move(shuttle_ua: ShuttleClient, shuttle_session: ShuttleSession) -> None:
    cart = fresh("C")
    assert await shuttle_ua.insert(cart) == "Good"
    assert await shuttle_ua.read("LoadPort", "CartridgeId") == cart
    task = fresh("mv/")
    run_id = await shuttle_ua.call(("Transport",), "Move", cart, "INC12", task)
    assert isinstance(run_id, str) and 0 < len(run_id) <= 64
    assert await shuttle_ua.read("LoadPort", "CartridgeId") == ""
    assert await shuttle_ua.unit_read("INC12", "CartridgeId") == ""
    assert await shuttle_ua.read("Transport", "State") == "Moving"
    assert await shuttle_ua.read("Transport", "TaskId") == task
    assert shuttle_session.world.cartridges[cart].location == "Transport"
    # the LoadPort stays reserved for the moving cartridge
    assert await shuttle_ua.insert(fresh("C")) == "BadInvalidState"
    # one move at a time
    status = await shuttle_ua.status(("Transport",), "Move", cart, "INC13", fresh("mv/"))
    assert status == "BadInvalidState"
    # idempotent by TaskId, whatever the other arguments
    assert await shuttle_ua.call(("Transport",), "Move", "bad id!", "Nowhere", task) == run_id
    assert await shuttle_ua.times_started(task) == 1
    shuttle_session.clock.scale = SCALE
    await shuttle_ua.wait_for(("Transport", "State"), lambda v: v == "Idle")
    assert await shuttle_ua.unit_read("INC12", "CartridgeId") == cart
    assert shuttle_session.world.cartridges[cart].location == "INC12"
    assert await shuttle_ua.times_started(task) == 1


async def test_move_refusals(shuttle_ua: ShuttleClient) -> None:
    a = await shuttle_ua.load("INC13")
    await shuttle_ua.clear_load_port()
    b = fresh("C")
    assert await shuttle_ua.insert(b) == "Good"
    move = ("Transport",)
    assert (
        await shuttle_ua.status(move, "Move", "bad id!", "INC14", fresh("m"))
        == "BadInvalidArgument"
    )
    assert await shuttle_ua.status(move, "Move", a, "INC99", fresh("m")) == "BadInvalidArgument"
    assert await shuttle_ua.status(move, "Move", a, "Transport", fresh("m")) == "BadInvalidArgument"
    assert await shuttle_ua.status(move, "Move", a, "INC14", "bad task!") == "BadInvalidArgument"
    assert await shuttle_ua.status(move, "Move", fresh("none"), "INC14", fresh("m")) == "BadNoMatch"
    # the destination holds a cartridge (a unit, or the LoadPort)
    assert await shuttle_ua.status(move, "Move", b, "INC13", fresh("m")) == "BadInvalidState"
    assert await shuttle_ua.status(move, "Move", a, "LoadPort", fresh("m")) == "BadInvalidState"
    assert await shuttle_ua.status(move, "Move", a, "INC13", fresh("m")) == "BadInvalidState"
    # the source unit is Running or Held
    task = fresh("T")
    await shuttle_ua.start("INC13", LONG, task, a)
    assert await shuttle_ua.status(move, "Move", a, "INC14", fresh("m")) == "BadInvalidState"
    await shuttle_ua.unit_call("INC13", "Hold", task)
    assert await shuttle_ua.status(move, "Move", a, "INC14", fresh("m")) == "BadInvalidState"
    assert await shuttle_ua.unit_read("INC13", "CartridgeId") == a
    await shuttle_ua.unit_call("INC13", "Stop", task)
    # a Complete unit becomes Idle when its cartridge leaves
    await shuttle_ua.empty_unit("INC14")
    await shuttle_ua.move(a, "INC14")
    assert await shuttle_ua.unit_read("INC13", "State") == "Idle"
    assert await shuttle_ua.unit_read("INC13", "CartridgeId") == ""
    assert await shuttle_ua.unit_read("INC14", "CartridgeId") == a
    assert await shuttle_ua.read("Transport", "State") == "Idle"


async def test_output_port_and_remove_cartridge(
    shuttle_ua: ShuttleClient, shuttle_session: ShuttleSession
) -> None:
    await shuttle_ua.clear_load_port()
    cart = fresh("C")
    assert await shuttle_ua.insert(cart) == "Good"
    await shuttle_ua.move(cart, "OutputPort")
    assert (await shuttle_ua.read("OutputPort", "CartridgeIds"))[-1] == cart
    assert await shuttle_ua.read("LoadPort", "CartridgeId") == ""
    # a cartridge at the OutputPort has left the shuttle
    status = await shuttle_ua.status(("Transport",), "Move", cart, "INC15", fresh("m"))
    assert status == "BadNoMatch"
    assert (
        await shuttle_ua.twin_status("RemoveCartridge", ua.Variant("bad id!", S))
        == "BadInvalidArgument"
    )
    assert await shuttle_ua.twin_status("RemoveCartridge", ua.Variant(cart, S)) == "Good"
    assert cart not in await shuttle_ua.read("OutputPort", "CartridgeIds")
    assert shuttle_session.world.cartridges[cart].location == "Removed"
    assert await shuttle_ua.twin_status("RemoveCartridge", ua.Variant(cart, S)) == "BadNoMatch"
    # an id is used for ever
    assert await shuttle_ua.insert(cart) == "BadInvalidArgument"


async def test_output_port_keeps_order_oldest_first(shuttle_ua: ShuttleClient) -> None:
    ids = []
    for _ in range(3):
        await shuttle_ua.clear_load_port()
        cart = fresh("C")
        assert await shuttle_ua.insert(cart) == "Good"
        await shuttle_ua.move(cart, "OutputPort")
        ids.append(cart)
    out = await shuttle_ua.read("OutputPort", "CartridgeIds")
    assert [c for c in out if c in ids] == ids


async def test_transport_fault_puts_the_cartridge_back(
    shuttle_ua: ShuttleClient, shuttle_session: ShuttleSession
) -> None:
    unit = "INC15"
    cart = await shuttle_ua.load(unit)
    task = fresh("T")
    await shuttle_ua.start(unit, short(), task, cart)
    await shuttle_ua.wait_unit(unit, "State", "Complete")
    with slowly(shuttle_session):  # the move is still under way when the fault comes
        await _fault_a_move(shuttle_ua, unit, cart)


async def _fault_a_move(shuttle_ua: ShuttleClient, unit: str, cart: str) -> None:
    await shuttle_ua.call(("Transport",), "Move", cart, "OutputPort", fresh("mv/"))
    assert await shuttle_ua.unit_read(unit, "CartridgeId") == ""
    assert await shuttle_ua.unit_read(unit, "State") == "Idle"
    args = [ua.Variant("Transport", S), ua.Variant(3, ua.VariantType.UInt32), ua.Variant("jam", S)]
    assert await shuttle_ua.twin_status("InjectFault", *args) == "Good"
    assert await shuttle_ua.read("Transport", "State") == "Faulted"
    assert await shuttle_ua.read("Transport", "FaultCode") == 3
    assert await shuttle_ua.read("Transport", "FaultText") == "jam"
    assert await shuttle_ua.unit_read(unit, "CartridgeId") == cart  # back where it was
    assert await shuttle_ua.unit_read(unit, "State") == "Idle"  # a unit that became Idle stays Idle
    assert cart not in await shuttle_ua.read("OutputPort", "CartridgeIds")
    status = await shuttle_ua.status(("Transport",), "Move", cart, "OutputPort", fresh("mv/"))
    assert status == "BadInvalidState"
    assert await shuttle_ua.status(("Transport",), "Clear") == "Good"
    assert await shuttle_ua.read("Transport", "State") == "Idle"
    assert await shuttle_ua.read("Transport", "FaultCode") == 0
    assert await shuttle_ua.status(("Transport",), "Clear") == "BadInvalidState"


async def test_insert_cartridge_rules(
    shuttle_ua: ShuttleClient, shuttle_session: ShuttleSession
) -> None:
    await shuttle_ua.clear_load_port()
    assert await shuttle_ua.insert("bad id!") == "BadInvalidArgument"
    assert await shuttle_ua.insert("x" * 33) == "BadInvalidArgument"
    assert await shuttle_ua.insert(fresh("C"), cells=-1.0) == "BadOutOfRange"
    cart = fresh("C")
    assert await shuttle_ua.insert(cart) == "Good"
    assert shuttle_session.world.cartridges[cart].viable_cells == 1e8
    assert await shuttle_ua.insert(fresh("C")) == "BadInvalidState"  # the port is taken
    assert await shuttle_ua.insert(cart) == "BadInvalidArgument"  # used
    assert await shuttle_ua.read("LoadPort", "CartridgeId") == cart
    wrong_type = [ua.Variant(cart, S), ua.Variant(1, ua.VariantType.Int32), ua.Variant(90.0)]
    assert await shuttle_ua.twin_status("InsertCartridge", *wrong_type) == "BadInvalidArgument"


async def test_time_scale_is_the_clock_scale(
    shuttle_ua: ShuttleClient, shuttle_session: ShuttleSession
) -> None:
    node = await shuttle_ua.twin_obj.get_child(f"{shuttle_ua.tns}:TimeScale")
    assert await node.read_data_type() == ua.NodeId(ua.VariantType.Double.value)
    try:
        await node.write_value(ua.Variant(1234.5, ua.VariantType.Double))
        assert shuttle_session.clock.scale == 1234.5
        assert await node.read_value() == 1234.5
        with pytest.raises(ua.UaStatusCodeError):
            await node.write_value(ua.Variant(-1.0, ua.VariantType.Double))
        assert shuttle_session.clock.scale == 1234.5
    finally:
        await node.write_value(ua.Variant(SCALE, ua.VariantType.Double))
    assert shuttle_session.clock.scale == SCALE


async def test_none_twin_offers_only_the_none_endpoint(shuttle_ua: ShuttleClient) -> None:
    endpoints = await shuttle_ua.client.get_endpoints()
    assert {e.SecurityPolicyUri.rsplit("#", 1)[-1] for e in endpoints} == {"None"}


async def test_standard_command_line_client_reads_the_twin(
    shuttle_ua: ShuttleClient, shuttle_twin: ShuttleTwin
) -> None:
    uaread = Path(sys.executable).with_name("uaread")
    assert uaread.exists()
    proc = await asyncio.create_subprocess_exec(
        str(uaread),
        "-u",
        shuttle_twin.url,
        "-n",
        f"ns={shuttle_ua.ns};s=Shuttle.Identification.SerialNumber",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(HANG_GUARD):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert shuttle_twin.serial_number in out.decode()


# ------------------------------------------------------------------ security
async def _secure_client(secure: SecureSetup, pki: Path, name: str, policy: Any) -> Client:
    uri = f"urn:cellfab:test:{name}"
    pair = ensure_certificate(pki, name, uri, server=False)
    client = Client(secure.url, timeout=10)
    client.application_uri = uri
    await client.set_security(
        policy,
        str(pair.cert),
        str(pair.key),
        server_certificate=str(secure.server_cert),
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    return client


async def test_trusted_client_connects_untrusted_is_refused(
    shuttle_secure: SecureSetup, tmp_path: Path
) -> None:
    assert shuttle_secure.server_cert.is_file()
    pki = tmp_path / "clients"
    trusted = ensure_certificate(pki, "trusted", "urn:cellfab:test:trusted", server=False)
    shutil.copy(trusted.cert, shuttle_secure.trusted_clients / f"{fresh('trusted')}.der")
    for policy in (SecurityPolicyBasic256Sha256, SecurityPolicyAes256Sha256RsaPss):
        client = await _secure_client(shuttle_secure, pki, "trusted", policy)
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
    untrusted = await _secure_client(shuttle_secure, pki, "stranger", SecurityPolicyBasic256Sha256)
    with pytest.raises(ua.UaStatusCodeError) as refused:
        async with asyncio.timeout(HANG_GUARD):
            await untrusted.connect()
    assert ua.StatusCode(refused.value.code).name == "BadCertificateUntrusted"
    untrusted.disconnect_socket()
    with pytest.raises(Exception):  # noqa: B017 - no None endpoint on a secure shuttle
        async with asyncio.timeout(HANG_GUARD), Client(shuttle_secure.url, timeout=5) as plain:
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
