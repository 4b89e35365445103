"""OPC UA server twin of a Cell Shuttle: ICD section 1 and the twin controls of section 4.

Owns the shuttle's address space (``Objects/Shuttle`` in ``urn:cellfab:shuttle:v1``
and ``Objects/Twin`` in ``urn:cellfab:twin:v1``), the state machines of its units and
of its transport, the program/move histories (idempotency by TaskId, results), and
the security set-up (server certificate, trust list of client certificates). The
physical truth (cells, volumes, samples, bags) lives in ``simulators.world.World``;
time comes from the shared ``simulators.clock.Clock``.

Default capabilities (``DEFAULT_CAPABILITIES``)::

    SEL1           cell_selection
    EP1            electroporation, transduction, activation
    INC01..INC16   activation, transduction, expansion, sample
    CFC1           harvest_wash, formulation, sample
    FIN1           fill_finish, sample

Unit state machine (ICD 1, "StartProgram", "Hold, Unhold, Stop, Abort", "Faults")::

    Idle|Complete --StartProgram--> Running --(nominal time done)--> Complete
    Running --Hold--> Held --Unhold--> Running        (Held stops the program clock)
    Running|Held --Stop--> Complete (outputs for the part that ran)
    Running|Held --Abort--> Aborted
    any --InjectFault--> Faulted (a running program ends Faulted)
    Aborted|Faulted --Clear--> Idle (the cartridge stays)
    Complete --cartridge leaves (Move)--> Idle

Transport::

    Idle --Move--> Moving --(60 process s)--> Idle   (cartridge in no bay meanwhile)
    any --InjectFault--> Faulted (a move in flight puts the cartridge back) --Clear--> Idle

Every state change is applied to an in-memory model synchronously and queued as an
ordered list of variable writes; the writes are then made one by one (asyncua's
server enqueues a notification per write for each monitored item), so a monitored
item sees every value State, TaskId, CartridgeId and FaultCode took, none merged.
A tick task (every 50 ms wall) advances running programs and moves on ``clock.now()``
differences, so a TimeScale write applies at once; every method call advances the
model to "now" first, so answers never lag behind the clock.

Method errors are answered as the method's status code (asyncua 2.1.0 turns an
exception raised by a method into BadUnexpectedError, so handlers return a
``ua.StatusCode`` instead).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from asyncua import Server, ua
from asyncua.common.node import Node
from asyncua.common.utils import ServiceError
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography import x509

from drivers import icd
from drivers.icd import BrowseName as BN
from drivers.icd import ResultStatus, TransportState, UnitState
from simulators.certs import ensure_certificate
from simulators.clock import Clock
from simulators.world import IN_TRANSPORT, PROCESS_VALUE_NAMES, REMOVED, World

log = logging.getLogger(__name__)

_INCUBATOR: Final = ("activation", "transduction", "expansion", "sample")
DEFAULT_CAPABILITIES: Final[dict[str, tuple[str, ...]]] = {
    "SEL1": ("cell_selection",),
    "EP1": ("electroporation", "transduction", "activation"),
    **{f"INC{i:02d}": _INCUBATOR for i in range(1, 17)},
    "CFC1": ("harvest_wash", "formulation", "sample"),
    "FIN1": ("fill_finish", "sample"),
}
# Fallback for other unit names, by their letter prefix (e.g. INC17, SEL2).
_CAPABILITIES_BY_PREFIX: Final[dict[str, tuple[str, ...]]] = {
    "SEL": DEFAULT_CAPABILITIES["SEL1"],
    "EP": DEFAULT_CAPABILITIES["EP1"],
    "INC": _INCUBATOR,
    "CFC": DEFAULT_CAPABILITIES["CFC1"],
    "FIN": DEFAULT_CAPABILITIES["FIN1"],
}

TICK_SECONDS: Final = 0.05
MAX_PARAMETERS_CHARS: Final = 16_384
MAX_FAULT_TEXT_CHARS: Final = 256
MODEL_ERROR_FAULT: Final = 900  # FaultCode when the world model refuses a program's effect

S, D, U32 = ua.VariantType.String, ua.VariantType.Double, ua.VariantType.UInt32
SecurityMode = Literal["none", "secure", "both"]


class _Refused(Exception):
    def __init__(self, code: int, why: str = "") -> None:
        super().__init__(why)
        self.code = code


def _bad(code: int, why: str = "") -> _Refused:
    return _Refused(code, why)


@dataclass
class ProgramRun:
    """One program started on a unit (an entry of its history)."""

    task_id: str
    run_id: str
    program: str
    params: dict[str, Any]
    cartridge_id: str
    nominal_s: float
    elapsed_s: float = 0.0
    status: ResultStatus = ResultStatus.RUNNING
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return 1.0 if self.nominal_s <= 0 else min(self.elapsed_s / self.nominal_s, 1.0)


@dataclass
class MoveRun:
    """One transport move (an entry of the transport's history)."""

    task_id: str
    run_id: str
    cartridge_id: str
    source: str
    dest: str
    elapsed_s: float = 0.0
    status: str = "Moving"  # Moving | Complete | Faulted


@dataclass
class UnitModel:
    unit_id: str
    capabilities: tuple[str, ...]
    state: UnitState = UnitState.IDLE
    cartridge_id: str = ""
    task_id: str = ""
    program: str = ""
    progress: float = 0.0
    remaining_s: float = 0.0
    fault_code: int = 0
    fault_text: str = ""
    active: ProgramRun | None = None
    history: collections.deque[ProgramRun] = field(
        default_factory=lambda: collections.deque(maxlen=icd.HISTORY_LEN)
    )
    process_values: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(PROCESS_VALUE_NAMES, 0.0)
    )

    def find(self, task_id: str) -> ProgramRun | None:
        return next((r for r in self.history if r.task_id == task_id), None)


@dataclass
class TransportModel:
    state: TransportState = TransportState.IDLE
    task_id: str = ""
    fault_code: int = 0
    fault_text: str = ""
    active: MoveRun | None = None
    history: collections.deque[MoveRun] = field(
        default_factory=lambda: collections.deque(maxlen=icd.HISTORY_LEN)
    )

    def find(self, task_id: str) -> MoveRun | None:
        return next((m for m in self.history if m.task_id == task_id), None)


def default_capabilities(unit_id: str) -> tuple[str, ...]:
    if unit_id in DEFAULT_CAPABILITIES:
        return DEFAULT_CAPABILITIES[unit_id]
    prefix = unit_id.rstrip("0123456789")
    if prefix in _CAPABILITIES_BY_PREFIX:
        return _CAPABILITIES_BY_PREFIX[prefix]
    raise ValueError(f"no default capabilities for unit {unit_id!r}; pass capabilities=")


class ShuttleTwin:
    """An asyncua server that behaves like a Cell Shuttle (ICD section 1 + section 4).

    ``security``: "none" offers only the None endpoint (development), "secure" only
    Basic256Sha256 and Aes256_Sha256_RsaPss with SignAndEncrypt, "both" all three.
    The server certificate/key are made on first start in ``cert_dir`` (reused when
    present); client certificates must be in ``trusted_clients_dir`` (default
    ``cert_dir/trusted``; re-read at every session, so a test may add one later).
    """

    def __init__(
        self,
        world: World,
        clock: Clock,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        units: Sequence[str] = icd.DEFAULT_UNITS,
        capabilities: Mapping[str, Sequence[str]] | None = None,
        security: SecurityMode = "both",
        cert_dir: Path | None = None,
        trusted_clients_dir: Path | None = None,
        serial_number: str = "SIM-0001",
    ) -> None:
        if security not in ("none", "secure", "both"):
            raise ValueError(f"security must be none, secure or both, got {security!r}")
        reserved = {icd.LOAD_PORT, icd.OUTPUT_PORT, icd.TRANSPORT}
        caps_in = dict(capabilities or {})
        self.world = world
        self.clock = clock
        self.host = host
        self.port = port
        self.security: SecurityMode = security
        self.serial_number = serial_number
        self.cert_dir = cert_dir or Path(tempfile.gettempdir()) / f"cellfab-shuttle-{serial_number}"
        self.trusted_clients_dir = trusted_clients_dir or self.cert_dir / "trusted"
        self.server_certificate_path = self.cert_dir / "shuttle.der"
        self.application_uri = f"urn:cellfab:shuttle:{serial_number}"
        self.units: dict[str, UnitModel] = {}
        for unit_id in units:
            if not icd.is_id(unit_id) or unit_id in reserved or unit_id in self.units:
                raise ValueError(f"bad or duplicate unit id {unit_id!r}")
            caps = tuple(caps_in.pop(unit_id, None) or default_capabilities(unit_id))
            unknown = [p for p in caps if p not in icd.PROGRAMS]
            if unknown:
                raise ValueError(f"unit {unit_id}: unknown programs {unknown}")
            self.units[unit_id] = UnitModel(unit_id, caps)
        if caps_in:
            raise ValueError(f"capabilities for units that do not exist: {sorted(caps_in)}")
        self.transport = TransportModel()
        self.load_port = ""
        self.output_port: list[str] = []
        self.device_state = icd.DeviceState.INITIALIZATION
        self.started_programs: collections.Counter[str] = collections.Counter()
        self.started_moves: collections.Counter[str] = collections.Counter()
        self.url = ""
        self._server: Server | None = None
        self._nodes: dict[tuple[str, ...], ua.NodeId] = {}
        self._vtypes: dict[tuple[str, ...], ua.VariantType] = {}
        self._cache: dict[tuple[str, ...], Any] = {}
        self._pending: list[tuple[tuple[str, ...], Any]] = []
        self._lock = asyncio.Lock()
        self._tick_task: asyncio.Task[None] | None = None
        self._last_now = 0.0
        self._wall0 = 0.0
        self._heartbeat = 0
        self._ns = 0
        self._tns = 0

    # ================================================================== life cycle
    async def start(self) -> None:
        server = Server()
        await server.init()
        self._server = server
        server.set_endpoint(f"opc.tcp://{self.host}:{self.port}{icd.SHUTTLE_PATH}")
        server.set_server_name(f"Cell Shuttle twin {self.serial_number}")
        await server.set_application_uri(self.application_uri)
        await self._setup_security(server)
        self._ns = await server.register_namespace(icd.SHUTTLE_NS)
        self._tns = await server.register_namespace(icd.TWIN_NS)
        await self._build_address_space(server)
        await server.start()
        actual_port = server.bserver.port if server.bserver else self.port
        self.port = actual_port
        self.url = f"opc.tcp://{self.host}:{actual_port}{icd.SHUTTLE_PATH}"
        for edp in server.iserver.endpoints:
            edp.EndpointUrl = self.url
            edp.Server.DiscoveryUrls = [self.url]
        self._last_now = self.clock.now()
        self._wall0 = time.monotonic()
        async with self._lock:
            self.device_state = icd.DeviceState.OPERATE
            self._emit((BN.DEVICE_STATE,), str(self.device_state))
            await self._flush()
        self._tick_task = asyncio.create_task(self._tick_loop(), name="shuttle-tick")
        log.info("shuttle twin %s serving on %s", self.serial_number, self.url)

    async def stop(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
            self._tick_task = None
        if self._server is not None:
            with contextlib.suppress(Exception):
                async with self._lock:
                    self._emit((BN.DEVICE_STATE,), str(icd.DeviceState.SHUTDOWN))
                    await self._flush()
            await self._server.stop()
            self._server = None

    async def __aenter__(self) -> ShuttleTwin:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ================================================================== security
    async def _setup_security(self, server: Server) -> None:
        policies: list[ua.SecurityPolicyType] = []
        if self.security in ("none", "both"):
            policies.append(ua.SecurityPolicyType.NoSecurity)
        if self.security in ("secure", "both"):
            policies += [
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
            ]
            pair = ensure_certificate(
                self.cert_dir,
                "shuttle",
                self.application_uri,
                server=True,
                hostnames=("localhost", "127.0.0.1", self.host),
            )
            self.server_certificate_path = pair.cert
            await server.load_certificate(str(pair.cert))
            await server.load_private_key(str(pair.key))
            self.trusted_clients_dir.mkdir(parents=True, exist_ok=True)
            server.set_certificate_validator(self._validate_client)
        server.set_security_policy(policies)

    async def _validate_client(
        self, cert: x509.Certificate, app: ua.ApplicationDescription
    ) -> None:
        """Refuse a client whose certificate is not in the trust list (re-read each time)."""
        files = [p for p in self.trusted_clients_dir.glob("*") if p.is_file()]
        if not files:
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)
        store = TrustStore([self.trusted_clients_dir], [])
        await store.load()
        options = (
            CertificateValidatorOptions.TIME_RANGE
            | CertificateValidatorOptions.URI
            | CertificateValidatorOptions.TRUSTED
            | CertificateValidatorOptions.REVOKED
            | CertificateValidatorOptions.PEER_CLIENT
        )
        await CertificateValidator(options, store).validate(cert, app)

    # ================================================================== address space
    async def _build_address_space(self, server: Server) -> None:
        ns, tns = self._ns, self._tns
        objects = server.nodes.objects

        def nid(*path: str) -> ua.NodeId:
            return ua.NodeId(".".join(("Shuttle", *path)), ns)

        async def obj(parent: Node, *path: str) -> Node:
            return await parent.add_object(nid(*path), ua.QualifiedName(path[-1], ns))

        async def var(
            parent: Node, key: tuple[str, ...], value: Any, vtype: ua.VariantType
        ) -> Node:
            node = await parent.add_variable(
                nid(*key), ua.QualifiedName(key[-1], ns), ua.Variant(value, vtype), vtype
            )
            if isinstance(value, list):
                await node.write_attribute(
                    ua.AttributeIds.ValueRank,
                    ua.DataValue(ua.Variant(ua.ValueRank.OneDimension, ua.VariantType.Int32)),
                )
                await node.write_attribute(
                    ua.AttributeIds.ArrayDimensions,
                    ua.DataValue(ua.Variant([0], ua.VariantType.UInt32)),
                )
            self._nodes[key] = node.nodeid
            self._vtypes[key] = vtype
            self._cache[key] = value
            return node

        async def method(
            parent: Node,
            key: tuple[str, ...],
            handler: Callable[..., Any],
            inputs: Sequence[tuple[str, ua.VariantType]],
            outputs: Sequence[tuple[str, ua.VariantType]],
            idx: int = ns,
        ) -> None:
            node_id = ua.NodeId(".".join(("Shuttle" if idx == ns else "Twin", *key)), idx)
            await parent.add_method(
                node_id,
                ua.QualifiedName(key[-1], idx),
                self._wrap(handler, [t for _, t in inputs]),
                [_arg(n, t) for n, t in inputs],
                [_arg(n, t) for n, t in outputs],
            )

        shuttle = await objects.add_object(
            ua.NodeId("Shuttle", ns), ua.QualifiedName(BN.SHUTTLE, ns)
        )
        ident = await obj(shuttle, BN.IDENTIFICATION)
        for name, value in (
            (BN.MANUFACTURER, "cellfab"),
            (BN.MODEL, "Cell Shuttle (software twin)"),
            (BN.SERIAL_NUMBER, self.serial_number),
            (BN.SOFTWARE_REVISION, f"ICD {icd.ICD_VERSION}"),
        ):
            await var(ident, (BN.IDENTIFICATION, name), value, S)
        await var(shuttle, (BN.DEVICE_STATE,), str(self.device_state), S)
        await var(shuttle, (BN.HEARTBEAT,), 0, U32)
        load = await obj(shuttle, BN.LOAD_PORT)
        await var(load, (BN.LOAD_PORT, BN.CARTRIDGE_ID), "", S)
        out = await obj(shuttle, BN.OUTPUT_PORT)
        await var(out, (BN.OUTPUT_PORT, BN.CARTRIDGE_IDS), [], S)

        tr = await obj(shuttle, BN.TRANSPORT)
        t = BN.TRANSPORT
        await var(tr, (t, BN.STATE), str(TransportState.IDLE), S)
        await var(tr, (t, BN.TASK_ID), "", S)
        await var(tr, (t, BN.FAULT_CODE), 0, U32)
        await var(tr, (t, BN.FAULT_TEXT), "", S)
        await method(
            tr,
            (t, BN.MOVE),
            self._move,
            [("CartridgeId", S), ("ToUnit", S), ("TaskId", S)],
            [("RunId", S)],
        )
        await method(tr, (t, BN.CLEAR), self._transport_clear, [], [])

        units = await obj(shuttle, BN.UNITS)
        for unit in self.units.values():
            u = unit.unit_id
            un = await obj(units, BN.UNITS, u)
            key = (BN.UNITS, u)
            await var(un, (*key, BN.CAPABILITIES), list(unit.capabilities), S)
            await var(un, (*key, BN.STATE), str(unit.state), S)
            await var(un, (*key, BN.CARTRIDGE_ID), "", S)
            await var(un, (*key, BN.TASK_ID), "", S)
            await var(un, (*key, BN.PROGRAM), "", S)
            await var(un, (*key, BN.PROGRESS), 0.0, D)
            await var(un, (*key, BN.REMAINING_SECONDS), 0.0, D)
            await var(un, (*key, BN.FAULT_CODE), 0, U32)
            await var(un, (*key, BN.FAULT_TEXT), "", S)
            pv = await obj(un, *key, BN.PROCESS_VALUES)
            for name in PROCESS_VALUE_NAMES:
                await var(pv, (*key, BN.PROCESS_VALUES, name), 0.0, D)
            bind = _Bind(self, u)
            await method(
                un,
                (*key, BN.START_PROGRAM),
                bind.start_program,
                [("Program", S), ("Parameters", S), ("TaskId", S), ("CartridgeId", S)],
                [("RunId", S)],
            )
            for name, handler in (
                (BN.HOLD, bind.hold),
                (BN.UNHOLD, bind.unhold),
                (BN.STOP, bind.stop),
                (BN.ABORT, bind.abort),
            ):
                await method(un, (*key, name), handler, [("TaskId", S)], [])
            await method(un, (*key, BN.CLEAR), bind.clear, [], [])
            await method(
                un,
                (*key, BN.GET_RESULT),
                bind.get_result,
                [("TaskId", S)],
                [("Status", S), ("Outputs", S)],
            )

        # section 4: twin controls
        twin = await objects.add_object(ua.NodeId("Twin", tns), ua.QualifiedName(BN.TWIN, tns))
        await method(
            twin,
            (BN.INSERT_CARTRIDGE,),
            self._insert_cartridge,
            [("CartridgeId", S), ("Cells", D), ("ViabilityPct", D)],
            [],
            tns,
        )
        await method(
            twin, (BN.REMOVE_CARTRIDGE,), self._remove_cartridge, [("CartridgeId", S)], [], tns
        )
        await method(
            twin,
            (BN.INJECT_FAULT,),
            self._inject_fault,
            [("UnitId", S), ("FaultCode", U32), ("FaultText", S)],
            [],
            tns,
        )
        scale = await twin.add_variable(
            ua.NodeId("Twin.TimeScale", tns),
            ua.QualifiedName(BN.TIME_SCALE, tns),
            ua.Variant(float(self.clock.scale), D),
            D,
        )
        await scale.set_writable(True)
        server.iserver.aspace.set_attribute_value_setter(
            scale.nodeid, ua.AttributeIds.Value, self._time_scale_setter
        )

    def _time_scale_setter(self, node: Any, attr: ua.AttributeIds, value: ua.DataValue) -> None:
        raw = value.Value.Value if value.Value is not None else None
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ServiceError(ua.StatusCodes.BadTypeMismatch)
        if not (math.isfinite(raw) and 0 < raw < 1e9):
            raise ServiceError(ua.StatusCodes.BadOutOfRange)
        self.clock.scale = float(raw)
        node.attributes[attr].value = value

    # ================================================================== method plumbing
    def _wrap(
        self, handler: Callable[..., Any], types: Sequence[ua.VariantType]
    ) -> Callable[..., Any]:
        async def call(_parent: ua.NodeId, *args: ua.Variant) -> Any:
            try:
                if len(args) != len(types):
                    raise _bad(ua.StatusCodes.BadInvalidArgument, "argument count")
                values = []
                for arg, vtype in zip(args, types, strict=True):
                    if not isinstance(arg, ua.Variant) or arg.VariantType != vtype or arg.is_array:
                        raise _bad(ua.StatusCodes.BadInvalidArgument, "argument type")
                    value = arg.Value
                    if vtype == S and value is None:
                        value = ""
                    values.append(value)
                async with self._lock:
                    try:
                        self._advance()
                        result = handler(*values)
                    finally:
                        await self._flush()
            except _Refused as refused:
                return ua.StatusCode(refused.code)
            except Exception:
                log.exception("shuttle twin: %s failed", getattr(handler, "__name__", handler))
                return ua.StatusCode(ua.StatusCodes.BadInternalError)
            if result is None:
                return []
            if isinstance(result, tuple):
                return [ua.Variant(v, S) for v in result]
            return [ua.Variant(result, S)]

        return call

    def _emit(self, key: tuple[str, ...], value: Any) -> None:
        self._pending.append((key, value))

    async def _flush(self) -> None:
        """Write queued values in order, one write per change (nothing merged)."""
        server = self._server
        pending, self._pending = self._pending, []
        if server is None:
            return
        for key, value in pending:
            if self._cache.get(key) == value and type(self._cache.get(key)) is type(value):
                continue
            self._cache[key] = value
            stamp = datetime.now(UTC)
            dv = ua.DataValue(
                ua.Variant(value, self._vtypes[key]), SourceTimestamp=stamp, ServerTimestamp=stamp
            )
            await server.write_attribute_value(self._nodes[key], dv)

    # ----------------------------------------------------------- model setters (emit)
    def _unit_emit(self, unit: UnitModel) -> None:
        k = (BN.UNITS, unit.unit_id)
        self._emit((*k, BN.TASK_ID), unit.task_id)
        self._emit((*k, BN.PROGRAM), unit.program)
        self._emit((*k, BN.CARTRIDGE_ID), unit.cartridge_id)
        self._emit((*k, BN.FAULT_CODE), unit.fault_code)
        self._emit((*k, BN.FAULT_TEXT), unit.fault_text)
        self._emit((*k, BN.PROGRESS), unit.progress)
        self._emit((*k, BN.REMAINING_SECONDS), unit.remaining_s)
        for name, value in unit.process_values.items():
            self._emit((*k, BN.PROCESS_VALUES, name), float(value))
        self._emit((*k, BN.STATE), str(unit.state))

    def _transport_emit(self) -> None:
        t, k = self.transport, BN.TRANSPORT
        self._emit((k, BN.TASK_ID), t.task_id)
        self._emit((k, BN.FAULT_CODE), t.fault_code)
        self._emit((k, BN.FAULT_TEXT), t.fault_text)
        self._emit((k, BN.STATE), str(t.state))

    def _ports_emit(self) -> None:
        self._emit((BN.LOAD_PORT, BN.CARTRIDGE_ID), self.load_port)
        self._emit((BN.OUTPUT_PORT, BN.CARTRIDGE_IDS), list(self.output_port))

    # ================================================================== time
    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                async with self._lock:
                    self._advance()
                    beats = int(time.monotonic() - self._wall0) & 0xFFFFFFFF
                    if beats != self._heartbeat:
                        self._heartbeat = beats
                        self._emit((BN.HEARTBEAT,), beats)
                    await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("shuttle twin tick failed")

    def _advance(self) -> None:
        """Advance running programs and the move in flight to clock.now()."""
        now = self.clock.now()
        dt = max(0.0, now - self._last_now)
        self._last_now = now
        self.world.now = now
        for unit in self.units.values():
            run = unit.active
            if run is None or unit.state is not UnitState.RUNNING:
                continue
            run.elapsed_s = min(run.elapsed_s + dt, run.nominal_s)
            if run.elapsed_s >= run.nominal_s:
                self._finish(unit, run, ResultStatus.COMPLETE)
            else:
                self._progress(unit, run)
        move = self.transport.active
        if move is not None and self.transport.state is TransportState.MOVING:
            move.elapsed_s += dt
            if move.elapsed_s >= icd.MOVE_SECONDS:
                self._arrive(move)

    def _progress(self, unit: UnitModel, run: ProgramRun) -> None:
        unit.progress = run.fraction
        unit.remaining_s = max(0.0, run.nominal_s - run.elapsed_s)
        with contextlib.suppress(Exception):
            pv = self.world.process_values(run.cartridge_id, run.program, run.params, run.fraction)
            unit.process_values.update({k: float(pv[k]) for k in PROCESS_VALUE_NAMES if k in pv})
        self._unit_emit(unit)

    def _finish(self, unit: UnitModel, run: ProgramRun, status: ResultStatus) -> None:
        """End the active program: Complete (full or Stop), Aborted or Faulted."""
        self._progress(unit, run)
        try:
            outputs = self.world.run_program(
                run.cartridge_id, run.program, run.params, run.fraction
            )
        except Exception as exc:  # the model refused: surface it as an instrument fault
            log.exception("world refused %s on %s", run.program, unit.unit_id)
            status, outputs = ResultStatus.FAULTED, {}
            unit.fault_code, unit.fault_text = MODEL_ERROR_FAULT, f"process model: {exc}"[:256]
        run.status = status
        run.outputs = outputs if status is ResultStatus.COMPLETE else {}
        unit.active = None
        unit.remaining_s = 0.0
        if status is ResultStatus.COMPLETE:
            unit.state = UnitState.COMPLETE
            if run.fraction >= 1.0:
                unit.progress = 1.0
        elif status is ResultStatus.ABORTED:
            unit.state = UnitState.ABORTED
        else:
            unit.state = UnitState.FAULTED
        self._unit_emit(unit)

    # ================================================================== unit methods
    def _unit_task(self, unit: UnitModel, task_id: str) -> None:
        if not icd.is_task_id(task_id) or task_id != unit.task_id:
            raise _bad(ua.StatusCodes.BadInvalidArgument, "TaskId is not the unit's TaskId")

    def _u_start_program(
        self, unit: UnitModel, program: str, parameters: str, task_id: str, cartridge_id: str
    ) -> str:
        # 1. idempotency, before any other check
        found = unit.find(task_id)
        if found is not None:
            return found.run_id
        # 2. malformed ids
        if not (icd.is_task_id(task_id) and icd.is_id(cartridge_id) and icd.is_id(program)):
            raise _bad(ua.StatusCodes.BadInvalidArgument, "malformed TaskId/CartridgeId/Program")
        # 3. capability
        if program not in unit.capabilities:
            raise _bad(ua.StatusCodes.BadNotSupported, f"{unit.unit_id} does not run {program}")
        # 4. parameters
        if len(parameters) > MAX_PARAMETERS_CHARS:
            raise _bad(ua.StatusCodes.BadInvalidArgument, "Parameters too long")
        params, errors = icd.parse_parameters(program, parameters)
        if params is None:
            raise _bad(ua.StatusCodes.BadInvalidArgument, "; ".join(errors))
        # 5. chain of identity
        if not unit.cartridge_id or unit.cartridge_id != cartridge_id:
            raise _bad(ua.StatusCodes.BadNoMatch, "bay holds no or another cartridge")
        # 6. state
        if unit.state not in icd.STARTABLE_STATES:
            raise _bad(ua.StatusCodes.BadInvalidState, f"unit is {unit.state}")
        spec = icd.PROGRAMS[program]
        run = ProgramRun(
            task_id=task_id,
            run_id=f"{unit.unit_id}-{uuid.uuid4().hex}",
            program=program,
            params=params,
            cartridge_id=cartridge_id,
            nominal_s=float(spec.nominal_seconds(params)),
        )
        unit.history.append(run)
        unit.active = run
        unit.task_id, unit.program = task_id, program
        unit.progress, unit.remaining_s = 0.0, run.nominal_s
        unit.state = UnitState.RUNNING
        self.started_programs[task_id] += 1
        self._unit_emit(unit)
        return run.run_id

    def _u_hold(self, unit: UnitModel, task_id: str) -> None:
        self._unit_task(unit, task_id)
        if unit.state is UnitState.HELD:
            return
        if unit.state is not UnitState.RUNNING or unit.active is None:
            raise _bad(ua.StatusCodes.BadInvalidState)
        unit.active.status = ResultStatus.HELD
        unit.state = UnitState.HELD
        self._unit_emit(unit)

    def _u_unhold(self, unit: UnitModel, task_id: str) -> None:
        self._unit_task(unit, task_id)
        if unit.state is UnitState.RUNNING:
            return
        if unit.state is not UnitState.HELD or unit.active is None:
            raise _bad(ua.StatusCodes.BadInvalidState)
        unit.active.status = ResultStatus.RUNNING
        unit.state = UnitState.RUNNING
        self._unit_emit(unit)

    def _u_stop(self, unit: UnitModel, task_id: str) -> None:
        self._unit_task(unit, task_id)
        if unit.state is UnitState.COMPLETE:
            return
        if unit.state not in (UnitState.RUNNING, UnitState.HELD) or unit.active is None:
            raise _bad(ua.StatusCodes.BadInvalidState)
        self._finish(unit, unit.active, ResultStatus.COMPLETE)

    def _u_abort(self, unit: UnitModel, task_id: str) -> None:
        self._unit_task(unit, task_id)
        if unit.state is UnitState.ABORTED:
            return
        if unit.state not in (UnitState.RUNNING, UnitState.HELD) or unit.active is None:
            raise _bad(ua.StatusCodes.BadInvalidState)
        self._finish(unit, unit.active, ResultStatus.ABORTED)

    def _u_clear(self, unit: UnitModel) -> None:
        if unit.state not in (UnitState.ABORTED, UnitState.FAULTED):
            raise _bad(ua.StatusCodes.BadInvalidState)
        unit.state = UnitState.IDLE
        unit.fault_code, unit.fault_text = 0, ""
        self._unit_emit(unit)

    def _u_get_result(self, unit: UnitModel, task_id: str) -> tuple[str, str]:
        if not icd.is_task_id(task_id):
            raise _bad(ua.StatusCodes.BadInvalidArgument)
        run = unit.find(task_id)
        if run is None:
            return str(ResultStatus.UNKNOWN), "{}"
        outputs = run.outputs if run.status is ResultStatus.COMPLETE else {}
        return str(run.status), json.dumps(outputs)

    # ================================================================== transport
    def _where(self, cartridge_id: str) -> str | None:
        """Where a cartridge is in the shuttle: LoadPort, a UnitId, Transport, or None."""
        if cartridge_id and self.load_port == cartridge_id:
            return icd.LOAD_PORT
        for unit in self.units.values():
            if unit.cartridge_id == cartridge_id:
                return unit.unit_id
        move = self.transport.active
        if move is not None and move.cartridge_id == cartridge_id:
            return IN_TRANSPORT
        return None

    def _move(self, cartridge_id: str, to_unit: str, task_id: str) -> str:
        t = self.transport
        found = t.find(task_id)
        if found is not None:
            return found.run_id
        valid_dest = to_unit in self.units or to_unit in (icd.LOAD_PORT, icd.OUTPUT_PORT)
        if not (icd.is_id(cartridge_id) and icd.is_task_id(task_id) and valid_dest):
            raise _bad(ua.StatusCodes.BadInvalidArgument, "malformed id or unknown ToUnit")
        source = self._where(cartridge_id)
        if source is None:
            raise _bad(ua.StatusCodes.BadNoMatch, "no such cartridge in the shuttle")
        if t.state is not TransportState.IDLE:
            raise _bad(ua.StatusCodes.BadInvalidState, f"transport is {t.state}")
        if to_unit == icd.LOAD_PORT and self.load_port:
            raise _bad(ua.StatusCodes.BadInvalidState, "the LoadPort holds a cartridge")
        if to_unit in self.units and self.units[to_unit].cartridge_id:
            raise _bad(ua.StatusCodes.BadInvalidState, "the destination holds a cartridge")
        src_unit = self.units.get(source)
        if src_unit is not None and src_unit.state not in icd.LEAVABLE_STATES:
            raise _bad(ua.StatusCodes.BadInvalidState, f"source unit is {src_unit.state}")
        move = MoveRun(task_id, f"MOVE-{uuid.uuid4().hex}", cartridge_id, source, to_unit)
        t.history.append(move)
        t.active = move
        t.task_id = task_id
        t.state = TransportState.MOVING
        self.started_moves[task_id] += 1
        if source == icd.LOAD_PORT:
            self.load_port = ""
            self._ports_emit()
        elif src_unit is not None:
            src_unit.cartridge_id = ""
            if src_unit.state is UnitState.COMPLETE:
                src_unit.state = UnitState.IDLE
            self._unit_emit(src_unit)
        self.world.set_location(cartridge_id, IN_TRANSPORT)
        self._transport_emit()
        return move.run_id

    def _put_cartridge(self, cartridge_id: str, where: str) -> None:
        if where == icd.LOAD_PORT:
            self.load_port = cartridge_id
            self._ports_emit()
        elif where == icd.OUTPUT_PORT:
            self.output_port.append(cartridge_id)
            self._ports_emit()
        else:
            unit = self.units[where]
            unit.cartridge_id = cartridge_id
            self._unit_emit(unit)
        self.world.set_location(cartridge_id, where)

    def _arrive(self, move: MoveRun) -> None:
        self._put_cartridge(move.cartridge_id, move.dest)
        move.status = "Complete"
        move.elapsed_s = icd.MOVE_SECONDS
        self.transport.active = None
        self.transport.state = TransportState.IDLE
        self._transport_emit()

    def _transport_clear(self) -> None:
        t = self.transport
        if t.state is not TransportState.FAULTED:
            raise _bad(ua.StatusCodes.BadInvalidState)
        t.state = TransportState.IDLE
        t.fault_code, t.fault_text = 0, ""
        self._transport_emit()

    # ================================================================== twin controls
    def _insert_cartridge(self, cartridge_id: str, cells: float, viability_pct: float) -> None:
        if not icd.is_id(cartridge_id) or cartridge_id in self.world.cartridges:
            raise _bad(ua.StatusCodes.BadInvalidArgument, "malformed or used cartridge id")
        if not (math.isfinite(cells) and cells >= 0 and math.isfinite(viability_pct)):
            raise _bad(ua.StatusCodes.BadInvalidArgument, "cells/viability")
        if not 0 < viability_pct <= 100:
            raise _bad(ua.StatusCodes.BadInvalidArgument, "viability")
        move = self.transport.active
        reserved = move is not None and icd.LOAD_PORT in (move.source, move.dest)
        if self.load_port or reserved:
            raise _bad(ua.StatusCodes.BadInvalidState, "the LoadPort is taken")
        try:
            self.world.insert_cartridge(cartridge_id, cells, viability_pct)
        except ValueError as exc:
            raise _bad(ua.StatusCodes.BadInvalidArgument, str(exc)) from None
        self.load_port = cartridge_id
        self._ports_emit()

    def _remove_cartridge(self, cartridge_id: str) -> None:
        if not icd.is_id(cartridge_id):
            raise _bad(ua.StatusCodes.BadInvalidArgument)
        if cartridge_id not in self.output_port:
            raise _bad(ua.StatusCodes.BadNoMatch, "not at the OutputPort")
        self.output_port.remove(cartridge_id)
        self.world.set_location(cartridge_id, REMOVED)
        self._ports_emit()

    def _inject_fault(self, unit_id: str, fault_code: int, fault_text: str) -> None:
        if fault_code == 0 or len(fault_text) > MAX_FAULT_TEXT_CHARS:
            raise _bad(ua.StatusCodes.BadInvalidArgument, "FaultCode 0 or FaultText too long")
        if unit_id == icd.TRANSPORT:
            t = self.transport
            move = t.active
            if move is not None:
                move.status = "Faulted"
                t.active = None
                self._put_cartridge(move.cartridge_id, move.source)
            t.state = TransportState.FAULTED
            t.fault_code, t.fault_text = fault_code, fault_text
            self._transport_emit()
            return
        unit = self.units.get(unit_id)
        if unit is None:
            raise _bad(ua.StatusCodes.BadInvalidArgument, f"unknown unit {unit_id!r}")
        unit.fault_code, unit.fault_text = fault_code, fault_text
        if unit.active is not None:
            self._finish(unit, unit.active, ResultStatus.FAULTED)
            unit.fault_code, unit.fault_text = fault_code, fault_text
        unit.state = UnitState.FAULTED
        self._unit_emit(unit)

    # ================================================================== test helpers
    def unit(self, unit_id: str) -> UnitModel:
        return self.units[unit_id]


class _Bind:
    """Binds a unit's methods to its model (one per unit, so handlers stay small)."""

    def __init__(self, twin: ShuttleTwin, unit_id: str) -> None:
        self.twin, self.unit = twin, twin.units[unit_id]

    def start_program(self, program: str, parameters: str, task_id: str, cartridge_id: str) -> str:
        return self.twin._u_start_program(self.unit, program, parameters, task_id, cartridge_id)

    def hold(self, task_id: str) -> None:
        self.twin._u_hold(self.unit, task_id)

    def unhold(self, task_id: str) -> None:
        self.twin._u_unhold(self.unit, task_id)

    def stop(self, task_id: str) -> None:
        self.twin._u_stop(self.unit, task_id)

    def abort(self, task_id: str) -> None:
        self.twin._u_abort(self.unit, task_id)

    def clear(self) -> None:
        self.twin._u_clear(self.unit)

    def get_result(self, task_id: str) -> tuple[str, str]:
        return self.twin._u_get_result(self.unit, task_id)


def _arg(name: str, vtype: ua.VariantType) -> ua.Argument:
    arg = ua.Argument()
    arg.Name = name
    arg.DataType = ua.NodeId(vtype.value)
    arg.ValueRank = ua.ValueRank.Scalar
    return arg
