"""OPC UA server twin of a Cell Shuttle: ICD section 1 and the twin controls of section 4.

Owns the shuttle's address space (``Objects/Shuttle`` in ``urn:cellfab:shuttle:v1``
and ``Objects/Twin`` in ``urn:cellfab:twin:v1``), the security set-up (server
certificate, trust list of client certificates), the method plumbing and time. The
behaviour (state machines, histories, idempotency, results) is
``simulators.shuttle_model.ShuttleModel``; the physical truth lives in
``simulators.world.World``; time comes from the shared ``simulators.clock.Clock``.

Default capabilities (``DEFAULT_CAPABILITIES``)::

    SEL1           cell_selection
    EP1            electroporation, transduction, activation
    INC01..INC16   activation, transduction, expansion, sample
    CFC1           harvest_wash, formulation, sample
    FIN1           fill_finish, sample

Writes. Every state change is applied to the model synchronously, which queues an
ordered list of variable writes; the writes are then made one by one, each with a
SourceTimestamp (asyncua's server enqueues a notification per write for each monitored
item), so a monitored item sees every value State, TaskId, CartridgeId and FaultCode
took, none merged, and a unit's TaskId and Program come before its State (ICD 1.1). A
monitored item whose queue still overflows gets the Overflow bit
(``simulators.uaserver``).

Time. A tick task (every 50 ms wall) advances running programs and moves on
``clock.now()`` differences, so a TimeScale write applies at once; every method call
advances the model to "now" first, so answers never lag behind the clock. Ends,
arrivals and every other change are written when they happen; the values the ICD lets a
client see merged (Progress, RemainingSeconds, ProcessValues) are reported by the tick
every REPORT_SECONDS (0.5 s wall) and with any change of their unit, as an instrument's
PLC would: 256 running units writing them every 50 ms and on every call kept one
asyncua server thread too busy to answer (bench.recovery, P5). A tick that fails is
logged; the first failure is raised again by ``stop()`` so a test sees it.

Method errors are answered as the method's status code (asyncua 2.1.0 turns an
exception raised by a method into BadUnexpectedError, so handlers return a
``ua.StatusCode`` instead). A method called on another object than its own answers
BadMethodInvalid; its arguments must be the declared typed Variants.

Write protection (ICD 1.1 section 4, ``simulators.uaserver``): every identity is a plain
user, nobody manages nodes, and only ``Twin/TimeScale`` is writable (0.001..1e7).

``Twin/StartedPrograms`` (ICD 1.1) is computed when read, from the model's list of every
program and move it started (idempotent repeats start nothing and are not in it).
"""

from __future__ import annotations

import asyncio
import functools
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import structlog
from asyncua import Server, ua
from asyncua.common.node import Node
from asyncua.common.utils import ServiceError
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography import x509

from drivers import icd
from drivers.icd import BrowseName as BN
from drivers.icd import TransportState
from simulators.certs import ensure_certificate
from simulators.clock import Clock
from simulators.shuttle_model import (
    DEFAULT_CAPABILITIES,
    Refused,
    ShuttleModel,
    UnitModel,
    default_capabilities,
)
from simulators.shuttle_model import (
    Path as VarPath,
)
from simulators.uaserver import (
    TwinPermissions,
    TwinUsers,
    check_writes,
    report_queue_overflow,
)
from simulators.world import PROCESS_VALUE_NAMES, World

__all__ = ["DEFAULT_CAPABILITIES", "PROCESS_VALUE_NAMES", "ShuttleTwin", "default_capabilities"]

log = structlog.get_logger("cellfab.twins.shuttle")

TICK_SECONDS: Final = 0.05
REPORT_SECONDS: Final = 0.5  # Progress, RemainingSeconds, ProcessValues of running units

S, D, U32 = ua.VariantType.String, ua.VariantType.Double, ua.VariantType.UInt32
SecurityMode = Literal["none", "secure", "both"]


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
        self.model = ShuttleModel(world, units, capabilities, self._emit)
        self.device_state = icd.DeviceState.INITIALIZATION
        self.url = ""
        self._server: Server | None = None
        self._nodes: dict[VarPath, ua.NodeId] = {}
        self._vtypes: dict[VarPath, ua.VariantType] = {}
        self._cache: dict[VarPath, Any] = {}
        self._pending: list[tuple[VarPath, Any]] = []
        self._lock = asyncio.Lock()
        self._tick_task: asyncio.Task[None] | None = None
        self._tick_failure: BaseException | None = None
        self._calls: set[asyncio.Task[Any]] = set()  # method calls running to their end
        self._wall0 = 0.0
        self._heartbeat = 0
        self._ns = 0
        self._tns = 0

    @property
    def units(self) -> dict[str, UnitModel]:
        return self.model.units

    def unit(self, unit_id: str) -> UnitModel:
        return self.model.units[unit_id]

    # ================================================================== life cycle
    async def start(self) -> None:
        server = Server(user_manager=TwinUsers())
        await server.init()
        server.iserver.allow_remote_admin = False
        self._server = server
        server.set_endpoint(f"opc.tcp://{self.host}:{self.port}{icd.SHUTTLE_PATH}")
        server.set_server_name(f"Cell Shuttle twin {self.serial_number}")
        await server.set_application_uri(self.application_uri)
        await self._setup_security(server)
        report_queue_overflow(server)
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
        self.model.now = self.clock.now()
        self._wall0 = time.monotonic()
        async with self._lock:
            self.device_state = icd.DeviceState.OPERATE
            self._emit((BN.DEVICE_STATE,), str(self.device_state))
            await self._flush()
        self._tick_failure = None
        self._tick_task = asyncio.create_task(self._tick_loop(), name="shuttle-tick")
        log.info("shuttle twin serving", serial=self.serial_number, url=self.url)

    async def stop(self) -> None:
        """Stop ticking and serving; raise the first tick failure, if there was one."""
        task, self._tick_task = self._tick_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.gather(*self._calls)  # each returns a status, never raises
        if self._server is not None:
            try:
                async with self._lock:
                    self._emit((BN.DEVICE_STATE,), str(icd.DeviceState.SHUTDOWN))
                    await self._flush()
            finally:
                await self._server.stop()
                self._server = None
        failure, self._tick_failure = self._tick_failure, None
        if failure is not None:
            raise failure

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
        server.set_security_policy(policies, permission_ruleset=TwinPermissions())

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
        model = self.model

        def nid(*path: str) -> ua.NodeId:
            return ua.NodeId(".".join(("Shuttle", *path)), ns)

        async def obj(parent: Node, *path: str) -> Node:
            return await parent.add_object(nid(*path), ua.QualifiedName(path[-1], ns))

        async def var(parent: Node, key: VarPath, value: Any, vtype: ua.VariantType) -> Node:
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
            key: VarPath,
            handler: Callable[..., Any],
            inputs: Sequence[tuple[str, ua.VariantType]],
            outputs: Sequence[tuple[str, ua.VariantType]],
            idx: int = ns,
        ) -> None:
            node_id = ua.NodeId(".".join(("Shuttle" if idx == ns else "Twin", *key)), idx)
            await parent.add_method(
                node_id,
                ua.QualifiedName(key[-1], idx),
                self._wrap(handler, [t for _, t in inputs], parent.nodeid),
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
            (BN.SOFTWARE_REVISION, f"ICD {icd.ICD_VERSION}.1"),
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
            model.move,
            [("CartridgeId", S), ("ToUnit", S), ("TaskId", S)],
            [("RunId", S)],
        )
        await method(tr, (t, BN.CLEAR), model.transport_clear, [], [])

        units = await obj(shuttle, BN.UNITS)
        for unit in model.units.values():
            key = (BN.UNITS, unit.unit_id)
            un = await obj(units, *key)
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
            await method(
                un,
                (*key, BN.START_PROGRAM),
                functools.partial(model.start_program, unit),
                [("Program", S), ("Parameters", S), ("TaskId", S), ("CartridgeId", S)],
                [("RunId", S)],
            )
            for name in (BN.HOLD, BN.UNHOLD, BN.STOP, BN.ABORT):
                handler = functools.partial(model.command, unit, name)
                await method(un, (*key, name), handler, [("TaskId", S)], [])
            await method(
                un, (*key, BN.CLEAR), functools.partial(model.command, unit, BN.CLEAR), [], []
            )
            await method(
                un,
                (*key, BN.GET_RESULT),
                functools.partial(model.get_result, unit),
                [("TaskId", S)],
                [("Status", S), ("Outputs", S)],
            )

        # section 4: twin controls
        twin = await objects.add_object(ua.NodeId("Twin", tns), ua.QualifiedName(BN.TWIN, tns))
        await method(
            twin,
            (BN.INSERT_CARTRIDGE,),
            model.insert_cartridge,
            [("CartridgeId", S), ("Cells", D), ("ViabilityPct", D)],
            [],
            tns,
        )
        await method(
            twin, (BN.REMOVE_CARTRIDGE,), model.remove_cartridge, [("CartridgeId", S)], [], tns
        )
        await method(
            twin,
            (BN.INJECT_FAULT,),
            model.inject_fault,
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
        aspace = server.iserver.aspace
        aspace.set_attribute_value_setter(
            scale.nodeid, ua.AttributeIds.Value, self._time_scale_setter
        )
        check_writes(server, {scale.nodeid: _time_scale_refusal})
        started = await twin.add_variable(
            ua.NodeId("Twin.StartedPrograms", tns),
            ua.QualifiedName(BN.STARTED_PROGRAMS, tns),
            ua.Variant("[]", S),
            S,
        )
        aspace.set_attribute_value_callback(
            started.nodeid, ua.AttributeIds.Value, self._started_programs
        )

    def _time_scale_setter(self, node: Any, attr: ua.AttributeIds, value: ua.DataValue) -> None:
        # checked before it gets here (_time_scale_refusal, per write: see check_writes)
        self.clock.scale = float(value.Value.Value)
        node.attributes[attr].value = value

    def _started_programs(self, _node: ua.NodeId, _attr: ua.AttributeIds) -> ua.DataValue:
        stamp = datetime.now(UTC)
        return ua.DataValue(
            ua.Variant(self.model.started_json(), S), SourceTimestamp=stamp, ServerTimestamp=stamp
        )

    # ================================================================== method plumbing
    def _wrap(
        self, handler: Callable[..., Any], types: Sequence[ua.VariantType], owner: ua.NodeId
    ) -> Callable[..., Any]:
        async def call(object_id: ua.NodeId, *args: ua.Variant) -> Any:
            if object_id != owner:  # Part 4, Call: the method is not the object's
                return ua.StatusCode(ua.StatusCodes.BadMethodInvalid)
            try:
                values = _arguments(args, types)
            except Refused as refused:
                return ua.StatusCode(getattr(ua.StatusCodes, refused.status))
            # A client that goes away mid-call cancels asyncua's handler: the call itself
            # runs to its end in a task of its own, so the model and its variables never
            # part (its writes are all made), and its answer is simply not delivered.
            task = asyncio.create_task(self._run(handler, values))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)
            return await asyncio.shield(task)

        return call

    async def _run(self, handler: Callable[..., Any], values: list[Any]) -> Any:
        """One method call under the lock: advance, apply, write; its answer or status."""
        try:
            async with self._lock:
                try:
                    self.model.advance(self.clock.now(), report=False)
                    result = handler(*values)
                finally:
                    await self._flush()
        except Refused as refused:
            return ua.StatusCode(getattr(ua.StatusCodes, refused.status))
        except Exception:
            log.exception("twin method failed", method=_name(handler))
            return ua.StatusCode(ua.StatusCodes.BadInternalError)
        if result is None:
            return []
        if isinstance(result, tuple):
            return [ua.Variant(v, S) for v in result]
        return [ua.Variant(result, S)]

    def _emit(self, key: VarPath, value: Any) -> None:
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

    # ================================================================== time
    async def _tick_loop(self) -> None:
        reported = 0.0
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                async with self._lock:
                    report = time.monotonic() - reported >= REPORT_SECONDS
                    if report:
                        reported = time.monotonic()
                    self.model.advance(self.clock.now(), report=report)
                    beats = int(time.monotonic() - self._wall0) & 0xFFFFFFFF
                    if beats != self._heartbeat:
                        self._heartbeat = beats
                        self._emit((BN.HEARTBEAT,), beats)
                    await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("shuttle twin tick failed")
                if self._tick_failure is None:
                    self._tick_failure = exc


def _arguments(args: Sequence[Any], types: Sequence[ua.VariantType]) -> list[Any]:
    """The values of typed Variants, exactly as the method declares them (ICD: "a client
    sends typed Variants"); ``Refused`` for a wrong count, type or an array."""
    if len(args) != len(types):
        raise Refused(icd.BAD_INVALID_ARGUMENT, "argument count")
    values = []
    for arg, vtype in zip(args, types, strict=True):
        if not isinstance(arg, ua.Variant) or arg.VariantType != vtype or arg.is_array:
            raise Refused(icd.BAD_INVALID_ARGUMENT, "argument type")
        value = arg.Value
        if vtype == S and value is None:
            value = ""
        values.append(value)
    return values


def _name(handler: Any) -> str:
    func = getattr(handler, "func", handler)
    return str(getattr(func, "__name__", handler))


def _arg(name: str, vtype: ua.VariantType) -> ua.Argument:
    arg = ua.Argument()
    arg.Name = name
    arg.DataType = ua.NodeId(vtype.value)
    arg.ValueRank = ua.ValueRank.Scalar
    return arg


def _time_scale_refusal(value: ua.DataValue) -> ua.StatusCode | None:
    """ICD section 4: TimeScale is a Double within 0.001..1e7, else BadOutOfRange."""
    raw = value.Value.Value if value.Value is not None else None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return ua.StatusCode(ua.StatusCodes.BadTypeMismatch)
    lo, hi = icd.TWIN_TIME_SCALE
    if not lo <= raw <= hi:  # NaN compares False: out of range too
        return ua.StatusCode(ua.StatusCodes.BadOutOfRange)
    return None
