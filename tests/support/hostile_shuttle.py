"""A scripted hostile shuttle: an asyncua server that speaks the ICD's address space
but answers as a test tells it to (garbage included), for the driver's hostile-server
suite (tests/drivers/opcua/test_opcua_hostile_server.py).

It offers ``Objects/Shuttle`` in ``urn:cellfab:shuttle:v1`` with one unit (``U1``), the
transport and the ports, and no twin controls. Every method answers what
``answers[name]`` returns for its arguments (``calls`` lists them, ``call_requests``
the number of methods in each Call request): a list of Variants (any types, any count),
a StatusCode, an awaitable of one of those (awaited on the server's loop: a slow
answer), or, for ``HANG``, nothing ever. ``force(path, variant)`` sets a variable to
any Variant, bypassing the server's own type check (a server that breaks its DataType),
and notifies its monitored items as a write does.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from asyncua import Server, ua
from asyncua.common.node import Node

from drivers import icd
from drivers.icd import BrowseName as BN
from drivers.opcua.space import UNIT_METHODS

T = TypeVar("T")
S, D, U32 = ua.VariantType.String, ua.VariantType.Double, ua.VariantType.UInt32
UNIT: Final = "U1"
HANG: Final = object()  # an answer that never comes

Answer = Callable[[list[Any]], Any]

_UNIT_VARS: Final[dict[str, ua.Variant]] = {
    BN.CAPABILITIES: ua.Variant(["expansion", "sample"], S),
    BN.STATE: ua.Variant("Idle", S),
    BN.CARTRIDGE_ID: ua.Variant("", S),
    BN.TASK_ID: ua.Variant("", S),
    BN.PROGRAM: ua.Variant("", S),
    BN.PROGRESS: ua.Variant(0.0, D),
    BN.REMAINING_SECONDS: ua.Variant(0.0, D),
    BN.FAULT_CODE: ua.Variant(0, U32),
    BN.FAULT_TEXT: ua.Variant("", S),
}


def default_answers() -> dict[str, Answer]:
    """What a well-behaved shuttle would answer (Good, a RunId, an Unknown result)."""
    return {
        BN.START_PROGRAM: lambda _a: [ua.Variant("RUN-1", S)],
        BN.MOVE: lambda _a: [ua.Variant("MOVE-1", S)],
        BN.GET_RESULT: lambda _a: [ua.Variant("Unknown", S), ua.Variant("{}", S)],
    }


class HostileShuttle:
    """``await HostileShuttle().start()``; ``url``; ``answers``; ``await force(...)``."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = default_answers()
        self.calls: list[tuple[str, list[Any]]] = []
        self.call_requests: list[int] = []  # methods in each Call request, in order
        self.url = ""
        self._server: Server | None = None
        self._nodes: dict[tuple[str, ...], ua.NodeId] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        server = Server()
        await server.init()
        server.set_endpoint("opc.tcp://127.0.0.1:0/shuttle")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await server.register_namespace(icd.SHUTTLE_NS)
        await self._build(server, ns)
        service = server.iserver.method_service
        call = service.call

        async def counted(methods: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
            self.call_requests.append(len(methods))
            return await call(methods)

        service.call = counted  # type: ignore[method-assign]
        await server.start()
        port = server.bserver.port if server.bserver else 0
        self.url = f"opc.tcp://127.0.0.1:{port}/shuttle"
        for edp in server.iserver.endpoints:
            edp.EndpointUrl = self.url
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def _build(self, server: Server, ns: int) -> None:
        async def obj(parent: Node, *path: str) -> Node:
            return await parent.add_object(
                ua.NodeId(".".join(path), ns), ua.QualifiedName(path[-1], ns)
            )

        async def var(parent: Node, path: tuple[str, ...], value: ua.Variant) -> None:
            node = await parent.add_variable(
                ua.NodeId(".".join(path), ns), ua.QualifiedName(path[-1], ns), value
            )
            self._nodes[path] = node.nodeid

        async def method(parent: Node, path: tuple[str, ...]) -> None:
            name = path[-1]

            async def handler(_obj: ua.NodeId, *args: ua.Variant) -> Any:
                values = [a.Value for a in args]
                self.calls.append((name, values))
                answer = self.answers.get(name, lambda _a: [])(values)
                if answer is HANG:
                    await asyncio.Event().wait()
                if inspect.isawaitable(answer):
                    answer = await answer
                return answer

            await parent.add_method(
                ua.NodeId(".".join(path), ns), ua.QualifiedName(name, ns), handler, [], []
            )

        shuttle = await obj(server.nodes.objects, BN.SHUTTLE)
        load = await obj(shuttle, BN.SHUTTLE, BN.LOAD_PORT)
        await var(load, (BN.LOAD_PORT, BN.CARTRIDGE_ID), ua.Variant("", S))
        out = await obj(shuttle, BN.SHUTTLE, BN.OUTPUT_PORT)
        await var(out, (BN.OUTPUT_PORT, BN.CARTRIDGE_IDS), ua.Variant([], S))
        tr = await obj(shuttle, BN.SHUTTLE, BN.TRANSPORT)
        for name in (BN.STATE, BN.TASK_ID, BN.FAULT_CODE, BN.FAULT_TEXT):
            initial = _UNIT_VARS[name] if name != BN.STATE else ua.Variant("Idle", S)
            await var(tr, (BN.TRANSPORT, name), initial)
        await method(tr, (BN.TRANSPORT, BN.MOVE))
        await method(tr, (BN.TRANSPORT, BN.CLEAR))
        units = await obj(shuttle, BN.SHUTTLE, BN.UNITS)
        unit = await obj(units, BN.UNITS, UNIT)
        for name, value in _UNIT_VARS.items():
            await var(unit, (UNIT, name), value)
        pvs = await obj(unit, UNIT, BN.PROCESS_VALUES)
        await var(pvs, (UNIT, BN.PROCESS_VALUES, "pH"), ua.Variant(7.0, D))
        for name in UNIT_METHODS:
            await method(unit, (UNIT, name))

    # ------------------------------------------------------------------ scripting
    async def on_loop(self, coro: Awaitable[T]) -> T:
        """Run ``coro`` on the server's loop, from any loop."""
        assert self._loop is not None
        if asyncio.get_running_loop() is self._loop:
            return await coro

        async def wrapper() -> T:
            return await coro

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(wrapper(), self._loop))

    async def force(self, path: tuple[str, ...], value: ua.Variant) -> None:
        """Set a variable to any Variant (no type check) and notify its monitored items."""

        async def run() -> None:
            assert self._server is not None
            aspace = self._server.iserver.aspace
            attval = aspace._nodes[self._nodes[path]].attributes[ua.AttributeIds.Value]
            dv = ua.DataValue(value)
            attval.value = dv
            for handle, callback in list(attval.datachange_callbacks.items()):
                await callback(handle, dv)

        await self.on_loop(run())

    async def reset(self) -> None:
        """Well-behaved again: default answers and values."""
        self.answers = default_answers()
        self.calls.clear()
        self.call_requests.clear()
        for name, value in _UNIT_VARS.items():
            await self.force((UNIT, name), value)
        await self.force((UNIT, BN.PROCESS_VALUES, "pH"), ua.Variant(7.0, D))
        for name in (BN.STATE, BN.TASK_ID, BN.FAULT_CODE, BN.FAULT_TEXT):
            initial = _UNIT_VARS[name] if name != BN.STATE else ua.Variant("Idle", S)
            await self.force((BN.TRANSPORT, name), initial)
        await self.force((BN.LOAD_PORT, BN.CARTRIDGE_ID), ua.Variant("", S))
        await self.force((BN.OUTPUT_PORT, BN.CARTRIDGE_IDS), ua.Variant([], S))
