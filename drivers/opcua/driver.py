"""``OpcUaShuttle``: the daemon's Cell Shuttle (``drivers.base.Shuttle``) over OPC UA.

Owns the public driver: the ICD's methods called with typed Variants, reads, results,
and the life cycle it hands to ``drivers._link.Link`` (state, supervisor, backoff) over
a ``drivers.opcua.connection.Connection`` (the OPC UA steps). The rest of the package:
``space`` (discovery), ``intake`` (notifications -> events), ``resync`` (the diff after a
loss), ``values`` (what the driver accepts), ``results`` (GetResult), ``security``,
``errors``, ``settings``.

Connection life cycle (events in brackets)::

    closed --__aenter__--> connecting --ok--> connected --fault--> lost [ConnectionLost]
                              | fails: typed error raised        ^        | backoff+jitter
                              v                                  |        v
                            closed             [ConnectionRestored]-- resync: new session,
                                                                      subscribe, read all
    any --__aexit__--> closed (every event stream ends)

Resync makes a fresh session, re-discovers, subscribes, then reads the full state
with one Read. Notifications that arrive meanwhile only update the cache; once the
stream has shown every value the Read saw, the driver emits one event per group of
values that differs from what consumers saw before the loss, then
``ConnectionRestored``. So no stale event reaches the daemon, and no event between Lost
and Restored describes anything but the current state.

Calls. While not connected every call raises ``CommunicationLost`` at once. A call
that fails on the wire raises ``CommunicationLost`` or ``InstrumentTimeout``: its
outcome is unknown and the driver does NOT re-send it. Callers re-send themselves,
relying on the ICD's TaskId idempotency (a StartProgram or Move whose TaskId the
instrument already knows starts nothing and answers the first RunId), or read
``result(task_id)`` first. ``clear`` and ``clear_transport`` are not repeatable on the
wire (ICD 1.1), so they read the state first: Idle is nothing to do, Aborted or
Faulted is cleared, anything else is ``InvalidState``; a repeat after a lost answer
is therefore safe. An answer outside the ICD (a RunId over 64 characters, Outputs
that are not the program's) raises ``InvalidAnswer`` and is not passed on.

Events. ``events()`` gives each caller a new bounded stream (from now on), with the
overflow rule of ``drivers._link``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any, Self

import structlog
from asyncua import ua

from drivers import icd
from drivers._link import ConnectionState, EventHub, EventStream, Link
from drivers.base import (
    CommunicationLost,
    InvalidAnswer,
    InvalidArgument,
    InvalidState,
    TaskResult,
    TransportStatus,
    UnitInfo,
    UnitStatus,
)
from drivers.icd import BrowseName as BN
from drivers.opcua.connection import Connection
from drivers.opcua.results import parse_result
from drivers.opcua.security import SecurityConfig
from drivers.opcua.settings import OpcUaSettings
from drivers.opcua.space import TRANSPORT_VARS, UNIT_VARS, Space, Unit
from drivers.opcua.values import cached_unit_status, check_run_id, unit_status

log = structlog.get_logger("cellfab.drivers.opcua")

_CLEARABLE = frozenset({icd.UnitState.ABORTED, icd.UnitState.FAULTED})


def _s(v: str) -> ua.Variant:
    return ua.Variant(v, ua.VariantType.String)


class OpcUaShuttle:
    """``drivers.base.Shuttle`` over OPC UA (ICD section 1).

    ``OpcUaShuttle(name, url, security=SecurityConfig(...), settings=OpcUaSettings())``;
    use as ``async with``. ``security`` defaults to Basic256Sha256/SignAndEncrypt and
    must then name the certificate files; ``SecurityConfig.insecure()`` for a
    development twin. Configuration errors raise ``SecurityConfigError`` here, at
    construction.
    """

    def __init__(
        self,
        name: str,
        url: str,
        security: SecurityConfig | None = None,
        settings: OpcUaSettings | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.security = security if security is not None else SecurityConfig()
        self.security.validate(name)
        self.settings = settings if settings is not None else OpcUaSettings()
        self._hub = EventHub(self.settings.event_queue_limit)
        self._conn = Connection(name, url, self.security, self.settings, self._hub)
        self._link = Link(name, self._conn, self._hub, self.settings.backoff, rng=rng)
        self._conn.link = self._link

    # ------------------------------------------------------------------ life cycle
    @property
    def state(self) -> ConnectionState:
        return self._link.state

    @property
    def connected(self) -> bool:
        return self._link.connected

    async def __aenter__(self) -> Self:
        await self._link.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        try:
            await self._link.close()
        finally:
            self._conn.forget()

    def events(self) -> EventStream:
        """A new subscriber's stream of events, from now on, none dropped silently."""
        return self._hub.subscribe()

    # ------------------------------------------------------------------ counters
    @property
    def notifications(self) -> int:
        return self._conn.intake.notifications

    @property
    def reconnects(self) -> int:
        return self._link.reconnects

    @property
    def last_loss_reason(self) -> str:
        return self._link.last_loss_reason

    # ------------------------------------------------------------------ helpers
    def _unit(self, space: Space, unit: str, operation: str) -> Unit:
        try:
            return space.units[unit]
        except KeyError:
            raise InvalidArgument(
                self.name, operation, f"no unit {unit!r} (units: {', '.join(space.units)})"
            ) from None

    async def _run(self, operation: str, unit: str | None, method: str, args: list[str]) -> str:
        """Call a unit's (or, with no unit, the transport's) method; its RunId if any."""
        _c, space, _g = self._conn.require(operation)
        if unit is None:
            obj, node = space.transport, space.transport_methods[method]
        else:
            u = self._unit(space, unit, operation)
            obj, node = u.node, u.methods[method]
        out = await self._conn.call(operation, obj, node, [_s(a) for a in args])
        if method not in (BN.START_PROGRAM, BN.MOVE):
            return ""
        try:
            return check_run_id(out[0] if len(out) == 1 else None)
        except ValueError as exc:
            raise InvalidAnswer(self.name, operation, str(exc)) from None

    # ------------------------------------------------------------------ Shuttle protocol
    async def units(self) -> Mapping[str, UnitInfo]:
        """The units found at the last (re)connect, with their Capabilities."""
        space = self._conn.space
        if space is None:
            raise CommunicationLost(self.name, "units", "never connected")
        return {u.unit_id: UnitInfo(u.unit_id, u.capabilities) for u in space.units.values()}

    async def unit_status(self, unit: str) -> UnitStatus:
        _c, space, _g = self._conn.require("unit_status")
        u = self._unit(space, unit, "unit_status")
        vals = await self._conn.read("unit_status", [((unit, v), u.vars[v]) for v in UNIT_VARS])
        return unit_status(unit, dict(zip(UNIT_VARS, vals, strict=True)))

    def cached_status(self, unit: str) -> UnitStatus:
        """The unit as last seen by subscription (no wire access)."""
        return cached_unit_status(unit, self._conn.intake.values)

    async def start(
        self,
        unit: str,
        program: str,
        params: Mapping[str, Any],
        task_id: str,
        cartridge_id: str,
    ) -> str:
        """StartProgram. Idempotent by ``task_id`` on the instrument; never re-sent here."""
        op = f"start {program} on {unit} ({task_id})"
        try:
            parameters = json.dumps(dict(params), allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(self.name, op, f"parameters are not JSON: {exc}") from None
        self._conn.intake.expect_start(unit, task_id, program)
        return await self._run(
            op, unit, BN.START_PROGRAM, [program, parameters, task_id, cartridge_id]
        )

    async def hold(self, unit: str, task_id: str) -> None:
        await self._run(f"hold {unit} ({task_id})", unit, BN.HOLD, [task_id])

    async def unhold(self, unit: str, task_id: str) -> None:
        await self._run(f"unhold {unit} ({task_id})", unit, BN.UNHOLD, [task_id])

    async def stop(self, unit: str, task_id: str) -> None:
        await self._run(f"stop {unit} ({task_id})", unit, BN.STOP, [task_id])

    async def abort(self, unit: str, task_id: str) -> None:
        await self._run(f"abort {unit} ({task_id})", unit, BN.ABORT, [task_id])

    async def clear(self, unit: str) -> None:
        """Clear, after reading the State: Idle is nothing to do (a repeat after a lost
        answer), Aborted or Faulted is cleared, anything else is InvalidState."""
        op = f"clear {unit}"
        state = (await self.unit_status(unit)).state
        if state == icd.UnitState.IDLE:
            log.info("clear: already Idle", instrument=self.name, unit=unit)
            return
        if state not in _CLEARABLE:
            raise InvalidState(self.name, op, f"{unit} is {state}; Clear needs Aborted or Faulted")
        await self._run(op, unit, BN.CLEAR, [])

    async def result(
        self, task_id: str, unit: str | None = None, program: str | None = None
    ) -> TaskResult:
        """GetResult on ``unit``, or on every unit in one Call request when None.

        ``program``: the program started under ``task_id``; its outputs are then checked
        to be exactly that program's."""
        op = f"result {task_id}" + (f" on {unit}" if unit else "")
        if program is not None and program not in icd.PROGRAMS:
            raise InvalidArgument(self.name, op, f"{program!r} is not a program of the ICD")
        _c, space, _g = self._conn.require(op)
        targets = [self._unit(space, unit, op)] if unit is not None else list(space.units.values())
        if not targets:
            return TaskResult(task_id, icd.ResultStatus.UNKNOWN, {}, program)
        results = await self._conn.call_shared(  # read-only: may share a Call request
            op, [(u.node, u.methods[BN.GET_RESULT], [_s(task_id)]) for u in targets]
        )
        found: TaskResult | None = None
        for res in results:
            self._conn.check_call(op, res)
            outs = [v.Value for v in res.OutputArguments or []]
            parsed = parse_result(self.name, op, task_id, outs, program)
            if parsed.status is not icd.ResultStatus.UNKNOWN:
                return parsed
            found = found or parsed
        assert found is not None
        return found

    async def load_port(self) -> str:
        _c, space, _g = self._conn.require("load_port")
        key = (icd.LOAD_PORT, BN.CARTRIDGE_ID)
        return str((await self._conn.read("load_port", [(key, space.load_port_id)]))[0])

    async def output_port(self) -> tuple[str, ...]:
        _c, space, _g = self._conn.require("output_port")
        key = (icd.OUTPUT_PORT, BN.CARTRIDGE_IDS)
        return tuple((await self._conn.read("output_port", [(key, space.output_port_ids)]))[0])

    async def transport_status(self) -> TransportStatus:
        """The transport's State, TaskId, FaultCode and FaultText, read now."""
        _c, space, _g = self._conn.require("transport_status")
        keys = [((icd.TRANSPORT, v), space.transport_vars[v]) for v in TRANSPORT_VARS]
        state, task_id, code, text = await self._conn.read("transport_status", keys)
        return TransportStatus(state, task_id, code, text)

    async def move(self, cartridge_id: str, to: str, task_id: str) -> str:
        """Transport.Move. Idempotent by ``task_id`` on the instrument; never re-sent here."""
        op = f"move {cartridge_id} to {to} ({task_id})"
        return await self._run(op, None, BN.MOVE, [cartridge_id, to, task_id])

    async def clear_transport(self) -> None:
        """Transport.Clear, after reading its State (as ``clear``)."""
        state = (await self.transport_status()).state
        if state == icd.TransportState.IDLE:
            log.info("clear transport: already Idle", instrument=self.name)
            return
        if state != icd.TransportState.FAULTED:
            raise InvalidState(self.name, "clear transport", f"transport is {state}; needs Faulted")
        await self._run("clear transport", None, BN.CLEAR, [])

    # ------------------------------------------------------------------ for tests / bench
    @property
    def namespace_index(self) -> int | None:
        space = self._conn.space
        return space.ns if space else None

    def node_of(self, unit: str, name: str) -> ua.NodeId:
        """NodeId of a unit (name "") or of its variable, method or process value."""
        space = self._conn.space
        if space is None:
            raise CommunicationLost(self.name, "node_of", "never connected")
        u = self._unit(space, unit, "node_of")
        if name == "":
            return u.node
        return u.vars.get(name) or u.methods.get(name) or u.process_values[name]
