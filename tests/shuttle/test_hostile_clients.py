"""Hostile clients against the shuttle twin (issue #8, ICD 1.1 section 4): whatever a
client sends, it gets a status code in bounded time and the twin keeps serving.

Write protection whatever the identity (asyncua gives the user name ``admin`` with any
password its Admin role), methods called on another object, twin argument ranges,
strict JSON in Outputs; then hypothesis over method arguments of every type, writes to
every node and attribute, node management and calls on wrong objects. These run
against a twin of their own (``shuttle_hostile``): a call that gets through cannot hurt
the suites that share the session twin.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import pytest
from asyncua import Client, ua
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers import icd
from simulators.shuttle_model import MODEL_ERROR_FAULT, ShuttleModel
from simulators.world import World
from tests.support import HANG_GUARD, fresh, task_id
from tests.support.shuttle import SCALE, HostileBench, ShuttleClient

S, D, U32 = ua.VariantType.String, ua.VariantType.Double, ua.VariantType.UInt32
DENIED: Final = {"BadUserAccessDenied", "BadNotWritable", "BadWriteNotSupported"}
IDENTITIES: Final = [None, ("admin", "anything"), ("Admin", ""), ("operator", "x")]


async def _client(url: str, identity: tuple[str, str] | None) -> Client:
    client = Client(url, timeout=10)
    if identity is not None:
        client.set_user(identity[0])
        client.set_password(identity[1])
    await client.connect()
    return client


@pytest.fixture(params=IDENTITIES, ids=["anonymous", "admin", "Admin", "operator"])
async def hostile(
    request: pytest.FixtureRequest, shuttle_hostile: HostileBench
) -> AsyncIterator[ShuttleClient]:
    client = await _client(shuttle_hostile.twin.url, request.param)
    helper = ShuttleClient(client)
    await helper.setup()
    try:
        yield helper
    finally:
        await client.disconnect()


def _name(code: int) -> str:
    return ua.StatusCode(code).name


async def _status(call: Any) -> str:
    try:
        async with asyncio.timeout(HANG_GUARD):
            result = await call
    except ua.UaStatusCodeError as exc:
        return _name(exc.code)
    if isinstance(result, list) and result and isinstance(result[0], ua.StatusCode):
        return result[0].name  # a per-item status (Write, DeleteNodes, ...)
    if isinstance(result, list) and result and hasattr(result[0], "StatusCode"):
        return result[0].StatusCode.name  # AddNodesResult
    return "Good"


async def _still_serving(ua_: ShuttleClient) -> None:
    """A normal call after the hostile ones: the twin answers as the ICD says."""
    assert await ua_.read("DeviceState") == "Operate"
    status, outputs = await ua_.unit_call("INC01", "GetResult", task_id("after"))
    assert (status, outputs) == ("Unknown", "{}")


# ------------------------------------------------------------------ write protection
async def test_no_identity_writes_a_variable_but_the_time_scale(hostile: ShuttleClient) -> None:
    ua_ = hostile
    state = await ua_.node("Units", "INC02", "State")
    write = ua_.client.uaclient.write
    for node, value in (
        (state, ua.Variant("Complete", S)),
        (await ua_.node("Units", "INC02", "FaultCode"), ua.Variant(7, U32)),
        (await ua_.node("LoadPort", "CartridgeId"), ua.Variant("GHOST", S)),
        (await ua_.twin_node("StartedPrograms"), ua.Variant("[]", S)),
    ):
        params = ua.WriteParameters(
            NodesToWrite=[
                ua.WriteValue(
                    NodeId=node.nodeid,
                    AttributeId=ua.AttributeIds.Value,
                    Value=ua.DataValue(value),
                )
            ]
        )
        assert await _status(write(params)) in DENIED, node
    display = ua.WriteParameters(
        NodesToWrite=[
            ua.WriteValue(
                NodeId=state.nodeid,
                AttributeId=ua.AttributeIds.DisplayName,
                Value=ua.DataValue(ua.Variant(ua.LocalizedText("x"))),
            )
        ]
    )
    assert await _status(write(display)) in DENIED
    assert await ua_.unit_read("INC02", "State") == "Idle"
    scale = await ua_.twin_node("TimeScale")
    await scale.write_value(ua.Variant(SCALE, D))  # the one writable variable
    await _still_serving(ua_)


async def test_no_identity_adds_or_deletes_nodes_or_references(hostile: ShuttleClient) -> None:
    ua_ = hostile
    uac = ua_.client.uaclient
    unit = await ua_.node("Units", "INC03")
    state = await ua_.node("Units", "INC03", "State")
    item = ua.AddNodesItem(
        ParentNodeId=unit.nodeid,
        ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasComponent),
        RequestedNewNodeId=ua.NodeId(fresh("Evil"), ua_.ns),
        BrowseName=ua.QualifiedName("Evil", ua_.ns),
        NodeClass=ua.NodeClass.Variable,
        NodeAttributes=ua.VariableAttributes(Value=ua.Variant("x", S)),
        TypeDefinition=ua.NodeId(ua.ObjectIds.BaseDataVariableType),
    )
    assert await _status(uac.add_nodes([item])) == "BadUserAccessDenied"
    delete = ua.DeleteNodesParameters(
        NodesToDelete=[ua.DeleteNodesItem(NodeId=state.nodeid, DeleteTargetReferences=True)]
    )
    assert await _status(uac.delete_nodes(delete)) == "BadUserAccessDenied"
    ref = ua.DeleteReferencesItem(
        SourceNodeId=unit.nodeid,
        ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasComponent),
        IsForward=True,
        TargetNodeId=state.nodeid,
        DeleteBidirectional=True,
    )
    assert await _status(uac.delete_references([ref])) == "BadUserAccessDenied"
    add_ref = ua.AddReferencesItem(
        SourceNodeId=unit.nodeid,
        ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasComponent),
        IsForward=True,
        TargetNodeId=ua.NodeId(ua.ObjectIds.Server),
        TargetNodeClass=ua.NodeClass.Object,
    )
    assert await _status(uac.add_references([add_ref])) == "BadUserAccessDenied"
    assert await state.read_value() == "Idle"  # still there
    await _still_serving(ua_)


# ------------------------------------------------------------------ method on its object
async def test_a_method_called_on_another_object_is_refused(hostile: ShuttleClient) -> None:
    """OPC UA Part 4 (Call): BadMethodInvalid when the method is not one of the object's."""
    ua_ = hostile
    cart = await ua_.load("INC04")
    task = task_id()
    await ua_.start(
        "INC04",
        ("expansion", {"temperature_c": 37, "duration_h": 336, "feed": "batch"}),
        task,
        cart,
    )
    abort_of_inc04 = (await ua_.node("Units", "INC04", "Abort")).nodeid
    inc05 = await ua_.node("Units", "INC05")
    assert (
        await _status(inc05.call_method(abort_of_inc04, ua.Variant(task, S))) == "BadMethodInvalid"
    )
    assert await ua_.unit_read("INC04", "State") == "Running"  # nothing happened
    move = (await ua_.node("Transport", "Move")).nodeid
    args = [ua.Variant(cart, S), ua.Variant("INC06", S), ua.Variant(task_id(), S)]
    assert await _status(inc05.call_method(move, *args)) == "BadMethodInvalid"
    insert = (await ua_.twin_node("InsertCartridge")).nodeid
    shuttle = ua_.shuttle
    twin_args = [ua.Variant(fresh("C"), S), ua.Variant(1e8, D), ua.Variant(90.0, D)]
    assert await _status(shuttle.call_method(insert, *twin_args)) == "BadMethodInvalid"
    await ua_.unit_call("INC04", "Abort", task)
    await _still_serving(ua_)


# ------------------------------------------------------------------ argument ranges
@pytest.mark.parametrize(
    ("cells", "viability", "expected"),
    [
        (1e3, 0.0, "Good"),
        (1e11, 100.0, "Good"),
        (999.0, 90.0, "BadOutOfRange"),
        (1.0000001e11, 90.0, "BadOutOfRange"),
        (1.7e308, 90.0, "BadOutOfRange"),
        (math.inf, 90.0, "BadOutOfRange"),
        (math.nan, 90.0, "BadOutOfRange"),
        (-1.0, 90.0, "BadOutOfRange"),
        (1e8, -0.1, "BadOutOfRange"),
        (1e8, 100.1, "BadOutOfRange"),
        (1e8, math.nan, "BadOutOfRange"),
    ],
)
async def test_insert_cartridge_ranges(
    shuttle_hostile: HostileBench, cells: float, viability: float, expected: str
) -> None:
    client = await _client(shuttle_hostile.twin.url, None)
    ua_ = ShuttleClient(client)
    try:
        await ua_.setup()
        await ua_.clear_load_port()
        assert await ua_.insert(fresh("C"), cells, viability) == expected
        if expected != "Good":
            assert await ua_.read("LoadPort", "CartridgeId") == ""
    finally:
        await client.disconnect()


@pytest.mark.parametrize("scale", [1e-300, 0.0009, 1.0000001e7, math.nan, math.inf, -1.0, 0.0])
async def test_time_scale_range(hostile: ShuttleClient, scale: float) -> None:
    node = await hostile.twin_node("TimeScale")
    try:
        with pytest.raises(ua.UaStatusCodeError) as err:
            await node.write_value(ua.Variant(scale, D))
        assert _name(err.value.code) == "BadOutOfRange"
        assert await node.read_value() == SCALE
        for edge in (0.001, 1e7):
            await node.write_value(ua.Variant(edge, D))
            assert await node.read_value() == edge
    finally:
        await node.write_value(ua.Variant(SCALE, D))


async def test_an_out_of_range_time_scale_is_refused_in_its_own_place_of_the_write(
    hostile: ShuttleClient,
) -> None:
    """OPC UA Part 4, 5.10.4: one StatusCode per WriteValue; the service itself is Good
    (a third-party client on another stack got a failed service request instead)."""
    node = await hostile.twin_node("TimeScale")
    params = ua.WriteParameters()
    for value in (0.0, SCALE):
        wv = ua.WriteValue()
        wv.NodeId, wv.AttributeId = node.nodeid, ua.AttributeIds.Value
        wv.Value = ua.DataValue(ua.Variant(value, D))
        params.NodesToWrite.append(wv)
    results = await node.session.write(params)
    assert [_name(r.value) for r in results] == ["BadOutOfRange", "Good"]
    assert await node.read_value() == SCALE


# ------------------------------------------------------------------ strict JSON
@pytest.mark.parametrize("viability", [0.0, 100.0])
async def test_extreme_cartridges_give_strict_json_outputs(
    shuttle_hostile: HostileBench, viability: float
) -> None:
    client = await _client(shuttle_hostile.twin.url, None)
    ua_ = ShuttleClient(client)
    await ua_.setup()
    scale = await ua_.twin_node("TimeScale")
    try:
        await scale.write_value(ua.Variant(icd.TWIN_TIME_SCALE[1], D))  # 336 h in 0.1 s
        await _strict_json_outputs(ua_, viability)
    finally:
        await scale.write_value(ua.Variant(SCALE, D))
        await client.disconnect()


async def _strict_json_outputs(ua_: ShuttleClient, viability: float) -> None:
    unit = "INC07"
    cart = await ua_.load(unit, cells=1e11, viability=viability)
    for program in (
        ("expansion", {"temperature_c": 40, "duration_h": 336, "feed": "batch"}),
        ("activation", {"reagent": "R", "duration_h": 72}),
        ("sample", {"volume_ml": 5, "sample_id": fresh("S")}),
    ):
        task = task_id()
        await ua_.start(unit, program, task, cart)
        await ua_.wait_unit(unit, "State", "Complete")
        status, outputs = await ua_.unit_call(unit, "GetResult", task)
        decoded = json.loads(outputs, parse_constant=_refuse)
        assert status == "Complete", (status, decoded)
        assert not icd.PROGRAMS[program[0]].check_outputs(decoded, complete=True)


def _refuse(name: str) -> Any:
    raise AssertionError(f"{name} in Outputs: not JSON")


@settings(max_examples=60, deadline=None)
@given(
    cells=st.floats(1e3, 1e11),
    viability=st.floats(0, 100),
    program=st.sampled_from(sorted(icd.PROGRAMS)),
    fraction=st.floats(0, 1),
)
def test_the_world_makes_finite_outputs_from_any_cartridge_in_range(
    cells: float, viability: float, program: str, fraction: float
) -> None:
    world = World(seed=1)
    world.insert_cartridge("C1", cells, viability)
    spec = icd.PROGRAMS[program]
    params = {p.name: _typical(p) for p in spec.params}
    outputs = world.run_program("C1", program, params, fraction)
    json.dumps(outputs, allow_nan=False)
    assert not spec.check_outputs(outputs, complete=True), outputs


def _typical(p: icd.ParamSpec) -> Any:
    if p.kind is icd.ParamKind.ENUM:
        return p.choices[0]
    if p.kind is icd.ParamKind.SAMPLE_ID:
        return "S1"
    if p.kind is icd.ParamKind.STR:
        return "x"
    assert p.maximum is not None
    return int(p.maximum) if p.kind is icd.ParamKind.INT else p.maximum


def test_outputs_a_world_gets_wrong_end_the_program_faulted_never_in_get_result() -> None:
    """Defence in depth: the twin checks what its world computed against the ICD table
    (finite numbers, ids); a NaN ends the program Faulted, never in Outputs."""
    writes: list[Any] = []

    class NaNWorld(World):
        def run_program(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            return {"cells_out": math.nan}

    world = NaNWorld(seed=1)
    model = ShuttleModel(world, ["INC01"], None, lambda path, value: writes.append(value))
    world.insert_cartridge("C1", 1e8, 90.0)
    model.load_port = "C1"
    model.move("C1", "INC01", "M1")
    model.advance(icd.MOVE_SECONDS)
    unit = model.units["INC01"]
    model.start_program(unit, "activation", '{"reagent": "R", "duration_h": 1}', "T1", "C1")
    model.advance(icd.MOVE_SECONDS + 3600.0)
    assert unit.state is icd.UnitState.FAULTED and unit.fault_code == MODEL_ERROR_FAULT
    status, outputs = model.get_result(unit, "T1")
    assert (status, outputs) == ("Faulted", "{}")


# ------------------------------------------------------------------ hypothesis
# (last in the module: random calls may leave the hostile twin in any state; every test
# above brings the units and ports it uses to a known state first)
@dataclass
class AddressMap:
    methods: list[tuple[ua.NodeId, ua.NodeId]]  # (method, the object it belongs to)
    objects: list[ua.NodeId]
    nodes: list[ua.NodeId]  # every node under Objects/Shuttle and Objects/Twin
    time_scale: ua.NodeId


async def _browse_all(ua_: ShuttleClient) -> AddressMap:
    methods: list[tuple[ua.NodeId, ua.NodeId]] = []
    objects: list[ua.NodeId] = []
    nodes: list[ua.NodeId] = []
    todo = [ua_.shuttle, ua_.twin_obj]
    while todo:
        node = todo.pop()
        nodes.append(node.nodeid)
        cls = await node.read_node_class()
        if cls == ua.NodeClass.Object:
            objects.append(node.nodeid)
        for child in await node.get_children():
            if await child.read_node_class() == ua.NodeClass.Method:
                methods.append((child.nodeid, node.nodeid))
                nodes.append(child.nodeid)
            else:
                todo.append(child)
    scale = (await ua_.twin_node("TimeScale")).nodeid
    return AddressMap(methods, objects, nodes, scale)


@pytest.fixture(scope="module")
def address(shuttle_hostile: HostileBench) -> AddressMap:
    return shuttle_hostile.run(_browse_all(shuttle_hostile.ua))


_VARIANTS = st.one_of(
    st.text(max_size=300).map(lambda v: ua.Variant(v, S)),
    st.from_regex(icd.TASK_ID_RE, fullmatch=True).map(lambda v: ua.Variant(v, S)),
    st.sampled_from([*icd.DEFAULT_UNITS, "Transport", "LoadPort", "OutputPort", ""]).map(
        lambda v: ua.Variant(v, S)
    ),
    st.just(ua.Variant("x" * 100_000, S)),
    st.floats().map(lambda v: ua.Variant(v, D)),
    st.integers(0, 2**32 - 1).map(lambda v: ua.Variant(v, U32)),
    st.integers(-(2**31), 2**31 - 1).map(lambda v: ua.Variant(v, ua.VariantType.Int32)),
    st.integers(-(2**63), 2**63 - 1).map(lambda v: ua.Variant(v, ua.VariantType.Int64)),
    st.booleans().map(lambda v: ua.Variant(v, ua.VariantType.Boolean)),
    st.binary(max_size=64).map(lambda v: ua.Variant(v, ua.VariantType.ByteString)),
    st.lists(st.text(max_size=8), max_size=4).map(lambda v: ua.Variant(v, S)),
    st.lists(st.floats(), max_size=4).map(lambda v: ua.Variant(v, D)),
    st.just(ua.Variant(None, ua.VariantType.Null)),
    st.just(ua.Variant(ua.LocalizedText("x"), ua.VariantType.LocalizedText)),
)
_HOSTILE = settings(
    max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


async def _call(
    ua_: ShuttleClient, obj: ua.NodeId, method: ua.NodeId, args: list[ua.Variant]
) -> ua.StatusCode:
    request = ua.CallMethodRequest(ObjectId=obj, MethodId=method, InputArguments=args)
    async with asyncio.timeout(HANG_GUARD):
        (result,) = await ua_.client.uaclient.call([request])
    return result.StatusCode


@_HOSTILE
@given(data=st.data(), args=st.lists(_VARIANTS, max_size=5))
def test_any_arguments_to_any_method_get_a_status_code(
    shuttle_hostile: HostileBench, address: AddressMap, data: st.DataObject, args: list[Any]
) -> None:
    method, owner = data.draw(st.sampled_from(address.methods))
    status = shuttle_hostile.run(_call(shuttle_hostile.ua, owner, method, args))
    assert isinstance(status, ua.StatusCode)
    assert status.name != "BadInternalError"  # a refusal, never a twin crash
    shuttle_hostile.run(_still_serving(shuttle_hostile.ua))


@_HOSTILE
@given(data=st.data(), args=st.lists(_VARIANTS, max_size=4))
def test_a_method_on_any_other_object_is_invalid_and_changes_nothing(
    shuttle_hostile: HostileBench, address: AddressMap, data: st.DataObject, args: list[Any]
) -> None:
    method, owner = data.draw(st.sampled_from(address.methods))
    obj = data.draw(st.sampled_from([o for o in address.objects if o != owner]))
    ua_ = shuttle_hostile.ua
    before = shuttle_hostile.run(ua_.started())
    status = shuttle_hostile.run(_call(ua_, obj, method, args))
    assert status.name in ("BadMethodInvalid", "BadNothingToDo"), status
    assert shuttle_hostile.run(ua_.started()) == before


_ATTRIBUTES = [
    ua.AttributeIds.Value,
    ua.AttributeIds.DisplayName,
    ua.AttributeIds.BrowseName,
    ua.AttributeIds.Description,
    ua.AttributeIds.AccessLevel,
    ua.AttributeIds.UserAccessLevel,
    ua.AttributeIds.DataType,
    ua.AttributeIds.ValueRank,
    ua.AttributeIds.WriteMask,
    ua.AttributeIds.Executable,
    ua.AttributeIds.NodeId,
]


async def _write(ua_: ShuttleClient, node: ua.NodeId, attr: int, value: Any) -> ua.StatusCode:
    params = ua.WriteParameters(
        NodesToWrite=[ua.WriteValue(NodeId=node, AttributeId=attr, Value=ua.DataValue(value))]
    )
    async with asyncio.timeout(HANG_GUARD):
        (status,) = await ua_.client.uaclient.write(params)
    return status


@_HOSTILE
@given(data=st.data(), value=_VARIANTS)
def test_a_write_to_any_node_and_attribute_is_refused_but_an_in_range_time_scale(
    shuttle_hostile: HostileBench, address: AddressMap, data: st.DataObject, value: Any
) -> None:
    node = data.draw(st.sampled_from(address.nodes))
    attr = data.draw(st.sampled_from(_ATTRIBUTES))
    ua_ = shuttle_hostile.ua
    try:
        status = shuttle_hostile.run(_write(ua_, node, attr, value))
    finally:
        shuttle_hostile.run(
            _write(ua_, address.time_scale, ua.AttributeIds.Value, ua.Variant(SCALE, D))
        )
    lo, hi = icd.TWIN_TIME_SCALE
    may_write = (
        node == address.time_scale
        and attr == ua.AttributeIds.Value
        and value.VariantType == D
        and not value.is_array
        and isinstance(value.Value, float)
        and lo <= value.Value <= hi
    )
    assert status.is_good() == may_write, (node, attr, value, status)
    shuttle_hostile.run(_still_serving(ua_))


@_HOSTILE
@given(data=st.data())
def test_node_management_is_refused_to_everyone(
    shuttle_hostile: HostileBench, address: AddressMap, data: st.DataObject
) -> None:
    ua_ = shuttle_hostile.ua
    uac = ua_.client.uaclient
    a = data.draw(st.sampled_from(address.nodes))
    b = data.draw(st.sampled_from(address.nodes))
    kind = data.draw(st.sampled_from(["add", "delete", "add_ref", "delete_ref"]))
    if kind == "add":
        item = ua.AddNodesItem(
            ParentNodeId=a,
            ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasComponent),
            RequestedNewNodeId=ua.NodeId(fresh("Evil"), ua_.ns),
            BrowseName=ua.QualifiedName("Evil", ua_.ns),
            NodeClass=ua.NodeClass.Object,
            NodeAttributes=ua.ObjectAttributes(),
            TypeDefinition=ua.NodeId(ua.ObjectIds.BaseObjectType),
        )
        call = uac.add_nodes([item])
    elif kind == "delete":
        call = uac.delete_nodes(
            ua.DeleteNodesParameters(NodesToDelete=[ua.DeleteNodesItem(NodeId=a)])
        )
    elif kind == "add_ref":
        call = uac.add_references(
            [
                ua.AddReferencesItem(
                    SourceNodeId=a,
                    ReferenceTypeId=ua.NodeId(ua.ObjectIds.Organizes),
                    IsForward=True,
                    TargetNodeId=b,
                    TargetNodeClass=ua.NodeClass.Object,
                )
            ]
        )
    else:
        call = uac.delete_references(
            [
                ua.DeleteReferencesItem(
                    SourceNodeId=a,
                    ReferenceTypeId=ua.NodeId(ua.ObjectIds.HierarchicalReferences),
                    IsForward=True,
                    TargetNodeId=b,
                    DeleteBidirectional=True,
                )
            ]
        )
    assert shuttle_hostile.run(_status(call)) == "BadUserAccessDenied"
    shuttle_hostile.run(_still_serving(ua_))
