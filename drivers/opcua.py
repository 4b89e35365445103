"""OPC UA driver of the Cell Shuttle (ICD section 1): ``OpcUaShuttle``.

This module owns the shuttle's side of the wire for the daemon: connecting (with the
security of ``drivers.opcua_security``), discovering the address space, calling the
ICD methods with typed Variants, following state by subscription, the event stream,
and reconnecting. Status codes become typed errors in ``drivers.opcua_errors``.

Discovery. Nothing is hard-coded but the ICD's namespace URI and browse names: the
namespace index is resolved at run time (NamespaceArray), every node is found by
TranslateBrowsePathsToNodeIds from Objects, the units by browsing Objects/Shuttle/Units,
each unit's process values by browsing its ProcessValues object.

Subscriptions. One subscription (publishing interval 100 ms by default, within the
ICD's 100 ms..1 s), one monitored item per followed variable, sampling interval 0,
server queue size ``settings.queue_size`` (default 1000, DiscardOldest) so the server
keeps every change of State, TaskId, CartridgeId and FaultCode between two publishes
(an asyncua server's default queue of 1 keeps only the latest). The client side does
not use asyncua's iterator queue (bounded, DROP_OLDEST by default): notifications are
handled synchronously in the publish callback, in order, into the value cache and the
event stream. A sequence-number gap or a value flagged with the Overflow info bit means
a change was lost: the driver then treats the connection as lost and resynchronizes.

Connection life cycle::

    closed --__aenter__--> connecting --ok--> connected --fault--> lost [ConnectionLost]
                              | fails: typed error raised        ^        | backoff+jitter
                              v                                  |        v
                            closed             [ConnectionRestored]-- resync: new session,
                                                                      subscribe, read all
    any --__aexit__--> closed (every event stream ends)

A fault is: the transport closing, asyncua's watchdog probe failing (a stalled
server), a call answering with a connection error or timing out, a notification gap.
Resync makes a fresh session, re-discovers, subscribes, then reads the full state
with one Read. Notifications that arrive meanwhile only update the cache; once the
stream has shown every value the Read saw (the Read is a barrier, see _read_snapshot), the
driver emits one event per value that differs from what it had emitted before the
loss, then ``ConnectionRestored``. So no stale event reaches the daemon, and no event
between Lost and Restored describes anything but the current state.

Calls. While not connected every call raises ``CommunicationLost`` at once. A call
that fails on the wire raises ``CommunicationLost`` or ``InstrumentTimeout``: its
outcome is unknown and the driver does NOT re-send it. Callers re-send themselves,
relying on the ICD's TaskId idempotency (a StartProgram or Move whose TaskId the
instrument already knows starts nothing and answers the first RunId), or read
``result(task_id)`` first.

Events. ``events()`` gives each caller a new stream (from now on). A stream buffers up
to ``settings.event_queue_limit`` events; a consumer that falls further behind gets its
buffer replaced by ``ConnectionLost`` (reason: overflow) followed by
``ConnectionRestored`` (when connected): never a silent drop, and the consumer knows to
re-read the state. Event rules: ``UnitStateChanged`` on every change of a unit's State
or TaskId (with the current Program), ``ProgressChanged`` and ``ProcessValuesChanged``
at most once per unit per publish (the ICD allows merging them), ``CartridgeChanged``
for a unit or the LoadPort, ``FaultChanged`` on FaultCode changes (and FaultText
changes while faulted), ``TransportChanged``, ``OutputPortChanged``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, Self, cast

from asyncua import Client, ua
from asyncua.common.subscription import Subscription

from drivers import icd
from drivers.base import (
    CartridgeChanged,
    CommunicationLost,
    ConnectionLost,
    ConnectionRestored,
    Event,
    FaultChanged,
    InstrumentError,
    InstrumentTimeout,
    InvalidArgument,
    OutputPortChanged,
    ProcessValuesChanged,
    ProgressChanged,
    TaskResult,
    TransportChanged,
    UnitInfo,
    UnitStateChanged,
    UnitStatus,
)
from drivers.icd import BrowseName as BN
from drivers.opcua_errors import SecurityRejected, check_status, translate
from drivers.opcua_security import SecurityConfig, apply_security

__all__ = ["OpcUaSettings", "OpcUaShuttle", "SecurityConfig"]

log = logging.getLogger(__name__)

_HIERARCHICAL: Final = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
_OVERFLOW_BITS: Final = 0x0400 | 0x0080  # InfoType DataValue + Overflow

# Variables followed by subscription, per unit and for the transport.
UNIT_VARS: Final = (
    BN.STATE,
    BN.CARTRIDGE_ID,
    BN.TASK_ID,
    BN.PROGRAM,
    BN.PROGRESS,
    BN.REMAINING_SECONDS,
    BN.FAULT_CODE,
    BN.FAULT_TEXT,
)
UNIT_METHODS: Final = (
    BN.START_PROGRAM,
    BN.HOLD,
    BN.UNHOLD,
    BN.STOP,
    BN.ABORT,
    BN.CLEAR,
    BN.GET_RESULT,
)
TRANSPORT_VARS: Final = (BN.STATE, BN.TASK_ID, BN.FAULT_CODE, BN.FAULT_TEXT)
_MERGEABLE: Final = frozenset({BN.PROGRESS, BN.REMAINING_SECONDS})
PV_PREFIX: Final = "pv:"
_SEQUENCED: Final = frozenset({BN.STATE, BN.TASK_ID, BN.PROGRAM})


@dataclass(frozen=True, slots=True)
class OpcUaSettings:
    """Timeouts (wall seconds), reconnect backoff and subscription sizes."""

    request_timeout: float = 4.0
    connect_timeout: float = 15.0
    watchdog_interval: float = 1.0
    session_timeout: float = 60.0
    publishing_interval_ms: float = 100.0
    queue_size: int = 1000  # server queue of State/TaskId/CartridgeId/FaultCode/... items
    merged_queue_size: int = 10  # server queue of Progress/RemainingSeconds/ProcessValues
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    backoff_factor: float = 2.0
    jitter: float = 0.5  # each delay is drawn from [d * (1 - jitter), d]
    event_queue_limit: int = 100_000

    def __post_init__(self) -> None:
        for name in ("request_timeout", "connect_timeout", "watchdog_interval", "session_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if not 100.0 <= self.publishing_interval_ms <= 1000.0:
            raise ValueError("publishing_interval_ms must be within the ICD's 100..1000 ms")
        if self.queue_size < 2 or self.merged_queue_size < 1:
            raise ValueError(
                "queue_size must be >= 2 (no transition merged), merged_queue_size >= 1"
            )
        if not (0 < self.backoff_initial <= self.backoff_max) or self.backoff_factor < 1:
            raise ValueError("backoff needs 0 < initial <= max and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction in 0..1")
        if self.event_queue_limit < 16:
            raise ValueError("event_queue_limit must be >= 16")

    def backoff_delays(self, rng: random.Random) -> Iterable[float]:
        """Exponential backoff with jitter: d, d*f, d*f^2 ... capped, each jittered down."""
        delay = self.backoff_initial
        while True:
            yield delay * (1.0 - self.jitter * rng.random())
            delay = min(delay * self.backoff_factor, self.backoff_max)


# --------------------------------------------------------------------------- address space
@dataclass(slots=True)
class _Unit:
    unit_id: str
    node: ua.NodeId
    vars: dict[str, ua.NodeId]
    methods: dict[str, ua.NodeId]
    capabilities_node: ua.NodeId
    process_values: dict[str, ua.NodeId] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ()


@dataclass(slots=True)
class _Space:
    ns: int
    units: dict[str, _Unit]
    transport: ua.NodeId
    transport_vars: dict[str, ua.NodeId]
    transport_methods: dict[str, ua.NodeId]
    load_port_id: ua.NodeId
    output_port_ids: ua.NodeId


class _Kind(Enum):
    UNIT = 1
    PV = 2
    TRANSPORT = 3
    LOAD_PORT = 4
    OUTPUT_PORT = 5


Key = tuple[str, str]  # (location, variable): ("SEL1", "State"), ("SEL1", "pv:pH"), ...


@dataclass(frozen=True, slots=True)
class _Item:
    key: Key
    kind: _Kind
    node: ua.NodeId


def _plain(node_id: ua.NodeId) -> ua.NodeId:
    return ua.NodeId(node_id.Identifier, node_id.NamespaceIndex, node_id.NodeIdType)


def _value(dv: ua.DataValue) -> Any:
    v = dv.Value
    return None if v is None else v.Value


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _s(v: Any) -> ua.Variant:
    return ua.Variant(v, ua.VariantType.String)


# --------------------------------------------------------------------------- events stream
class EventStream(AsyncIterator[Event]):
    """One subscriber's queue-backed stream; ``aclose()`` unsubscribes."""

    def __init__(self, owner: OpcUaShuttle, limit: int) -> None:
        self._owner = owner
        self._limit = limit
        self._queue: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.overflows = 0

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def push(self, event: Event) -> None:
        if self._closed:
            return
        if len(self._queue) >= self._limit:
            self.overflows += 1
            dropped = len(self._queue)
            self._queue.clear()
            self._queue.append(
                ConnectionLost(
                    source=event.source,
                    reason=f"event stream overflow: {dropped} unread events dropped; re-read state",
                )
            )
            if self._owner.connected:
                self._queue.append(ConnectionRestored(source=event.source))
            # fall through: the event that did not fit is current, keep it
        self._queue.append(event)
        self._wake()

    def end(self) -> None:
        self._closed = True
        self._wake()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._queue:
                return self._queue.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def aclose(self) -> None:
        self._owner._unsubscribe(self)
        self.end()

    def pending(self) -> int:
        return len(self._queue)


# --------------------------------------------------------------------------- subscription
class _Subscription(Subscription):
    """asyncua Subscription that hands every publish straight to the driver, in order.

    asyncua's iterator mode would put each notification into a bounded queue that drops
    the oldest on overflow; its handler mode spawns a task per notification. Here the
    publish callback itself feeds the driver synchronously: nothing is dropped or
    reordered, and the cost per notification is one cache update.
    """

    def __init__(
        self,
        session: Any,
        params: ua.CreateSubscriptionParameters,
        sink: Callable[[ua.NotificationMessage], None],
    ) -> None:
        super().__init__(session, params, handler=cast(Any, _NO_HANDLER))
        self._sink = sink

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.last_publish_at = time.monotonic()
        self._sink(publish_result.NotificationMessage)


class _NoHandler:
    pass


_NO_HANDLER: Final = _NoHandler()


# --------------------------------------------------------------------------- the driver
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
        self._rng = rng if rng is not None else random.Random()
        self._client: Client | None = None
        self._sub: _Subscription | None = None
        self._space: _Space | None = None
        self._items: dict[int, _Item] = {}
        self._values: dict[Key, Any] = {}
        # the cache as consumers last saw it (taken when the gate closed on a loss): every
        # resync attempt diffs against it, so an attempt that failed after filling the
        # cache, or late notifications of the lost subscription, hide no change
        self._seen: dict[Key, Any] = {}
        self._gen = 0
        self._state = "closed"
        self._gate_open = False  # notifications emit events only when open
        self._last_seq: int | None = None
        self._initial: set[int] = set()  # handles whose first value arrived (resync)
        self._barrier: dict[Key, set[Any]] | None = None  # values seen since the Read began
        self._progress_event = asyncio.Event()
        self._streams: list[EventStream] = []
        self._lost = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        # counters, for tests and the bench
        self.notifications = 0
        self.reconnects = 0
        self.last_loss_reason = ""

    # ------------------------------------------------------------------ life cycle
    @property
    def connected(self) -> bool:
        return self._state == "connected"

    @property
    def state(self) -> str:
        """closed | connecting | connected | lost."""
        return self._state

    async def __aenter__(self) -> Self:
        if self._state != "closed":
            raise InvalidArgument(self.name, "connect", f"driver is already {self._state}")
        self._closing = False
        self._state = "connecting"
        self._lost = asyncio.Event()
        try:
            await self._establish(resync=False)
        except BaseException:
            self._state = "closed"
            raise
        self._state = "connected"
        self._gate_open = True
        self._supervisor = asyncio.create_task(self._supervise(), name=f"{self.name}-supervisor")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closing = True
        self._lost.set()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
            self._supervisor = None
        await self._teardown()
        self._state = "closed"
        self._gate_open = False
        for stream in self._streams:
            stream.end()
        self._streams.clear()

    def events(self) -> EventStream:
        """A new subscriber's stream of events, from now on, none dropped silently."""
        stream = EventStream(self, self.settings.event_queue_limit)
        self._streams.append(stream)
        return stream

    def _unsubscribe(self, stream: EventStream) -> None:
        with contextlib.suppress(ValueError):
            self._streams.remove(stream)

    def _emit(self, event: Event) -> None:
        for stream in self._streams:
            stream.push(event)

    # ------------------------------------------------------------------ connect / resync
    async def _establish(self, resync: bool) -> None:
        """New client, session, discovery, subscription, full read. Raises typed errors."""
        self._gen += 1
        gen = self._gen
        s = self.settings
        client = Client(
            self.url,
            timeout=s.request_timeout,
            watchdog_intervall=s.watchdog_interval,
            auto_reconnect=False,
        )
        client.name = client.description = f"cellfab {self.name}"
        client.session_timeout = int(s.session_timeout * 1000)
        client.connection_lost_callback = self._lost_callback(gen)
        self._client = client
        self._gate_open = False
        before = self._seen
        try:
            async with asyncio.timeout(s.connect_timeout):
                await apply_security(client, self.security, self.name)
                await client.connect()
                space = await self._discover(client)
                self._space = space
                await self._subscribe(client, space, gen)
                await self._read_snapshot(client, space)
        except BaseException as exc:
            await self._teardown()
            if isinstance(exc, asyncio.CancelledError):
                raise
            if isinstance(exc, TimeoutError):
                raise translate(self.name, "connect", exc) from None
            raise translate(self.name, "connect", exc) from exc
        if resync:
            for event in self._diff_events(before, self._values):
                self._emit(event)

    def _lost_callback(self, gen: int) -> Callable[[Exception], Any]:
        async def on_lost(exc: Exception) -> None:
            self._mark_lost(f"connection lost: {exc!r}", gen)

        return on_lost

    def _mark_lost(self, reason: str, gen: int | None = None) -> None:
        """Enter 'lost' once per connection generation; the supervisor reconnects."""
        if gen is not None and gen != self._gen:
            return
        if self._state != "connected" or self._closing:
            return
        log.warning("%s: %s", self.name, reason)
        self._state = "lost"
        self._gate_open = False
        self._seen = dict(self._values)
        self.last_loss_reason = reason
        self._emit(ConnectionLost(source=self.name, reason=reason))
        self._lost.set()

    async def _supervise(self) -> None:
        while not self._closing:
            await self._lost.wait()
            if self._closing:
                return
            await self._teardown()
            for delay in self.settings.backoff_delays(self._rng):
                if self._closing:
                    return
                await asyncio.sleep(delay)
                try:
                    await self._establish(resync=True)
                except InstrumentError as exc:
                    level = logging.ERROR if isinstance(exc, SecurityRejected) else logging.INFO
                    log.log(level, "%s: reconnect failed: %s", self.name, exc)
                    continue
                break
            if self._closing:
                return
            self._lost.clear()
            self._state = "connected"
            self.reconnects += 1
            self._emit(ConnectionRestored(source=self.name))
            self._gate_open = True

    async def _teardown(self) -> None:
        client, self._client = self._client, None
        self._sub = None
        self._items = {}
        self._initial = set()
        self._last_seq = None
        if client is None:
            return
        client.connection_lost_callback = None
        try:
            async with asyncio.timeout(min(1.0, self.settings.request_timeout)):
                await client.disconnect()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) and not isinstance(exc, TimeoutError):
                client.disconnect_socket()
                raise
        finally:
            client.disconnect_socket()

    async def _discover(self, client: Client) -> _Space:
        namespaces = await client.get_namespace_array()
        try:
            ns = namespaces.index(icd.SHUTTLE_NS)
        except ValueError:
            raise InstrumentError(
                self.name, "connect", f"server has no namespace {icd.SHUTTLE_NS}"
            ) from None
        objects = ua.NodeId(ua.ObjectIds.ObjectsFolder)
        top: list[list[str]] = [
            [BN.SHUTTLE, BN.UNITS],
            [BN.SHUTTLE, BN.TRANSPORT],
            [BN.SHUTTLE, BN.LOAD_PORT, BN.CARTRIDGE_ID],
            [BN.SHUTTLE, BN.OUTPUT_PORT, BN.CARTRIDGE_IDS],
            *([BN.SHUTTLE, BN.TRANSPORT, v] for v in TRANSPORT_VARS),
            [BN.SHUTTLE, BN.TRANSPORT, BN.MOVE],
            [BN.SHUTTLE, BN.TRANSPORT, BN.CLEAR],
        ]
        found = await self._translate(client, [(objects, p) for p in top], ns)
        units_node, transport, load_port, output_port = found[:4]
        tvars = dict(zip(TRANSPORT_VARS, found[4 : 4 + len(TRANSPORT_VARS)], strict=True))
        move, tclear = found[-2:]
        units: dict[str, _Unit] = {}
        pv_parents: list[ua.NodeId] = []
        children = (await self._browse(client, [units_node], ns, ua.NodeClass.Object))[0]
        paths: list[tuple[ua.NodeId, list[str]]] = []
        names = [*UNIT_VARS, BN.CAPABILITIES, BN.PROCESS_VALUES, *UNIT_METHODS]
        for _unit_id, node in children:
            paths += [(node, [n]) for n in names]
        nodes = await self._translate(client, paths, ns) if paths else []
        for i, (unit_id, node) in enumerate(children):
            got = dict(zip(names, nodes[i * len(names) : (i + 1) * len(names)], strict=True))
            units[unit_id] = _Unit(
                unit_id=unit_id,
                node=node,
                vars={n: got[n] for n in UNIT_VARS},
                methods={n: got[n] for n in UNIT_METHODS},
                capabilities_node=got[BN.CAPABILITIES],
            )
            pv_parents.append(got[BN.PROCESS_VALUES])
        pv_lists = await self._browse(client, pv_parents, None, ua.NodeClass.Variable)
        for unit_id, pvs in zip(units, pv_lists, strict=True):
            units[unit_id].process_values = dict(pvs)
        return _Space(
            ns=ns,
            units=units,
            transport=transport,
            transport_vars=tvars,
            transport_methods={BN.MOVE: move, BN.CLEAR: tclear},
            load_port_id=load_port,
            output_port_ids=output_port,
        )

    async def _translate(
        self, client: Client, paths: Sequence[tuple[ua.NodeId, list[str]]], ns: int
    ) -> list[ua.NodeId]:
        """TranslateBrowsePathsToNodeIds for every path (browse names in the ICD namespace)."""
        requests = []
        for start, names in paths:
            rp = ua.RelativePath(
                Elements=[
                    ua.RelativePathElement(
                        ReferenceTypeId=_HIERARCHICAL,
                        IsInverse=False,
                        IncludeSubtypes=True,
                        TargetName=ua.QualifiedName(n, ns),
                    )
                    for n in names
                ]
            )
            requests.append(ua.BrowsePath(StartingNode=start, RelativePath=rp))
        results = await client.uaclient.translate_browsepaths_to_nodeids(requests)
        out: list[ua.NodeId] = []
        for (_start, names), res in zip(paths, results, strict=True):
            if not res.StatusCode.is_good() or not res.Targets:
                raise InstrumentError(
                    self.name,
                    "connect",
                    f"address space lacks {'/'.join(names)} ({res.StatusCode.name}); "
                    "is this an ICD v1 Cell Shuttle?",
                )
            out.append(_plain(res.Targets[0].TargetId))
        return out

    async def _browse(
        self, client: Client, nodes: Sequence[ua.NodeId], ns: int | None, node_class: ua.NodeClass
    ) -> list[list[tuple[str, ua.NodeId]]]:
        """Forward hierarchical children of each node of one class: [(BrowseName, NodeId)]."""
        if not nodes:
            return []
        params = ua.BrowseParameters()
        params.NodesToBrowse = [
            ua.BrowseDescription(
                NodeId=n,
                BrowseDirection=ua.BrowseDirection.Forward,
                ReferenceTypeId=_HIERARCHICAL,
                IncludeSubtypes=True,
                NodeClassMask=node_class.value,
                ResultMask=ua.BrowseResultMask.All,
            )
            for n in nodes
        ]
        results = await client.uaclient.browse(params)
        out: list[list[tuple[str, ua.NodeId]]] = []
        for res in results:
            check_status(self.name, "browse", res.StatusCode)
            refs = list(res.References or [])
            cp = res.ContinuationPoint
            while cp:
                nxt = ua.BrowseNextParameters(
                    ReleaseContinuationPoints=False, ContinuationPoints=[cp]
                )
                more = (await client.uaclient.browse_next(nxt))[0]
                refs += list(more.References or [])
                cp = more.ContinuationPoint
            out.append(
                [
                    (r.BrowseName.Name, _plain(r.NodeId))
                    for r in refs
                    if ns is None or r.BrowseName.NamespaceIndex == ns
                ]
            )
        return out

    def _plan_items(self, space: _Space) -> list[tuple[_Item, bool]]:
        """Every monitored variable and whether changes of it may be merged."""
        items: list[tuple[_Item, bool]] = []
        for unit in space.units.values():
            for var in UNIT_VARS:
                items.append(
                    (_Item((unit.unit_id, var), _Kind.UNIT, unit.vars[var]), var in _MERGEABLE)
                )
            for pv, node in unit.process_values.items():
                items.append((_Item((unit.unit_id, PV_PREFIX + pv), _Kind.PV, node), True))
        for var in TRANSPORT_VARS:
            items.append(
                (_Item((icd.TRANSPORT, var), _Kind.TRANSPORT, space.transport_vars[var]), False)
            )
        items.append(
            (_Item((icd.LOAD_PORT, BN.CARTRIDGE_ID), _Kind.LOAD_PORT, space.load_port_id), False)
        )
        items.append(
            (
                _Item(
                    (icd.OUTPUT_PORT, BN.CARTRIDGE_IDS), _Kind.OUTPUT_PORT, space.output_port_ids
                ),
                False,
            )
        )
        return items

    async def _subscribe(self, client: Client, space: _Space, gen: int) -> None:
        s = self.settings
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=s.publishing_interval_ms,
            RequestedLifetimeCount=max(
                30, int(3 * s.session_timeout * 1000 / s.publishing_interval_ms)
            ),
            RequestedMaxKeepAliveCount=max(1, int(1000 / s.publishing_interval_ms)),
            MaxNotificationsPerPublish=0,  # no limit
            PublishingEnabled=True,
            Priority=0,
        )
        sub = _Subscription(
            client.uaclient.session, params, lambda m: self._on_publish_safe(m, gen)
        )
        await sub.init()
        self._sub = sub
        planned = self._plan_items(space)
        self._items = {}
        requests = []
        for handle, (item, mergeable) in enumerate(planned, start=1):
            self._items[handle] = item
            mp = ua.MonitoringParameters(
                ClientHandle=handle,
                SamplingInterval=0.0,
                QueueSize=s.merged_queue_size if mergeable else s.queue_size,
                DiscardOldest=True,
            )
            requests.append(
                ua.MonitoredItemCreateRequest(
                    ItemToMonitor=ua.ReadValueId(
                        NodeId=item.node, AttributeId=ua.AttributeIds.Value
                    ),
                    MonitoringMode=ua.MonitoringMode.Reporting,
                    RequestedParameters=mp,
                )
            )
        results = await sub.create_monitored_items(requests)
        for (item, _m), res in zip(planned, results, strict=True):
            if isinstance(res, ua.StatusCode):
                raise InstrumentError(
                    self.name, "subscribe", f"cannot monitor {'/'.join(item.key)}: {res.name}"
                )

    async def _read_snapshot(self, client: Client, space: _Space) -> None:
        """Full state: initial values of every item, then one Read used as a barrier.

        The cache is only ever written by the ordered notification stream, so it never
        goes back in time. The Read proves the stream is complete: every followed
        variable whose Read value the stream has not shown yet is waited for (each
        change of a non-mergeable variable is reported, so it will come).
        """
        s = self.settings
        await self._wait_for(lambda: len(self._initial) >= len(self._items), "initial values")
        items = list(self._items.values())
        caps = [u.capabilities_node for u in space.units.values()]
        params = ua.ReadParameters(
            TimestampsToReturn=ua.TimestampsToReturn.Both,
            NodesToRead=[
                ua.ReadValueId(NodeId=n, AttributeId=ua.AttributeIds.Value)
                for n in [*(i.node for i in items), *caps]
            ],
        )
        self._barrier = {}
        try:
            dvs = await client.uaclient.read(params)
            pending: dict[Key, Any] = {}
            for item, dv in zip(items, dvs[: len(items)], strict=True):
                if dv.StatusCode is not None and not dv.StatusCode.is_good():
                    raise InstrumentError(
                        self.name, "read state", f"{'/'.join(item.key)}: {dv.StatusCode.name}"
                    )
                if item.kind is _Kind.PV or item.key[1] in _MERGEABLE:
                    continue
                value = _hashable(_value(dv))
                if self._values.get(item.key, _MISSING) != value and value not in self._barrier.get(
                    item.key, ()
                ):
                    pending[item.key] = value
            if pending:
                log.info("%s: waiting for %d in-flight changes", self.name, len(pending))
                await self._wait_for(
                    lambda: all(v in self._barrier.get(k, ()) for k, v in pending.items()),  # type: ignore[union-attr]
                    "the changes the Read showed",
                    limit=max(2.0, 20 * s.publishing_interval_ms / 1000),
                )
        finally:
            self._barrier = None
        for unit, dv in zip(space.units.values(), dvs[len(items) :], strict=True):
            unit.capabilities = tuple(_value(dv) or ())

    async def _wait_for(
        self, condition: Callable[[], bool], what: str, limit: float | None = None
    ) -> None:
        """Wait (publish by publish) until ``condition``; InstrumentTimeout after ``limit``."""
        deadline = time.monotonic() + (limit or self.settings.connect_timeout)
        while not condition():
            if time.monotonic() > deadline:
                raise InstrumentTimeout(self.name, "connect", f"no notification of {what}")
            self._progress_event.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await self._progress_event.wait()

    # ------------------------------------------------------------------ notifications
    def _apply(self, key: Key, value: Any) -> bool:
        """Update the cache; False when the value is unchanged.

        Order comes from the stream alone (a monitored item's notifications arrive in
        order; an old subscription's are dropped by generation). Timestamps are not
        compared: the ICD promises none, and an instrument clock stepping back (NTP, a
        reboot without RTC) would otherwise make every later change look stale.
        """
        value = _hashable(value)
        if self._barrier is not None:
            self._barrier.setdefault(key, set()).add(value)
        if key in self._values and self._values[key] == value:
            return False
        self._values[key] = value
        return True

    def _on_publish_safe(self, msg: ua.NotificationMessage, gen: int) -> None:
        try:
            self._on_publish(msg, gen)
        except Exception as exc:  # a bug or a malformed notification: resync, never go stale
            log.exception("%s: notification handling failed", self.name)
            self._mark_lost(f"notification handling failed: {exc!r}", gen)

    def _on_publish(self, msg: ua.NotificationMessage, gen: int) -> None:
        if gen != self._gen:
            return
        data = msg.NotificationData
        if not data:
            return  # keep-alive
        seq = int(msg.SequenceNumber)
        if self._last_seq is not None and seq != self._last_seq + 1 and seq > self._last_seq:
            self._last_seq = seq
            self._mark_lost(f"notification sequence gap before {seq}", gen)
            return
        self._last_seq = seq
        for notif in data:
            if isinstance(notif, ua.DataChangeNotification):
                self._on_datachange(notif.MonitoredItems, gen)
            elif isinstance(notif, ua.StatusChangeNotification):
                self._mark_lost(f"subscription status {notif.Status.name}", gen)

    def _on_datachange(self, monitored: list[ua.MonitoredItemNotification], gen: int) -> None:
        items = self._items
        self.notifications += len(monitored)
        emit = self._gate_open
        merged: dict[tuple[str, _Kind], None] = {}
        # State/TaskId/Program per location, in the order of each item (see _replay_states)
        runs: dict[str, dict[str, list[Any]]] = {}
        if not emit:
            self._initial.update(n.ClientHandle for n in monitored)
            self._progress_event.set()
        for n in monitored:
            item = items.get(n.ClientHandle)
            if item is None:
                continue
            dv = n.Value
            status = dv.StatusCode
            if status is not None and status.value & _OVERFLOW_BITS == _OVERFLOW_BITS:
                if not (item.kind is _Kind.PV or item.key[1] in _MERGEABLE):
                    self._mark_lost(f"server queue overflow on {'/'.join(item.key)}", gen)
                    return
            loc, var = item.key
            if var in _SEQUENCED and item.kind in (_Kind.UNIT, _Kind.TRANSPORT):
                runs.setdefault(loc, {}).setdefault(var, []).append(_value(dv))
                continue
            if not self._apply(item.key, _value(dv)) or not emit:
                continue
            if item.kind is _Kind.PV:
                merged[(loc, _Kind.PV)] = None
            elif item.kind is _Kind.UNIT:
                if var in _MERGEABLE:
                    merged[(loc, _Kind.UNIT)] = None
                else:
                    event = self._unit_event(loc, var)
                    if event is not None:
                        self._emit(event)
            else:
                event = self._other_event(item.kind, var)
                if event is not None:
                    self._emit(event)
        for loc, by_var in runs.items():
            self._replay_states(loc, by_var, emit)
        for loc, kind in merged:
            self._emit(self._progress(loc) if kind is _Kind.UNIT else self._pvs(loc))

    def _replay_states(self, loc: str, by_var: dict[str, list[Any]], emit: bool) -> None:
        """Interleave one publish's State, TaskId and Program changes of one location.

        A publish lists each monitored item's changes in order, but items one after the
        other, and the ICD gives no timestamps to interleave them. The ICD does say when
        a TaskId (and Program) changes: only when a StartProgram (a Move) starts, i.e.
        with a State transition Idle|Complete -> Running (Idle -> Moving). So the k-th
        last TaskId change is placed at the k-th last such transition of this publish;
        every State change is then emitted with the TaskId it belongs to.
        """
        transport = loc == icd.TRANSPORT
        states = by_var.get(BN.STATE, [])
        start_to = icd.TransportState.MOVING if transport else icd.UnitState.RUNNING
        start_from = (
            {icd.TransportState.IDLE} if transport else {icd.UnitState.IDLE, icd.UnitState.COMPLETE}
        )
        prev = self._values.get((loc, BN.STATE))
        starts: list[int] = []
        for i, st in enumerate(states):
            if st == start_to and prev in start_from:
                starts.append(i)
            prev = st
        at: dict[int, list[tuple[str, Any]]] = {}
        for var in (BN.TASK_ID, BN.PROGRAM):
            changes = by_var.get(var, [])
            k = len(changes)
            if k == 0:
                continue
            idx = starts[-k:] if k <= len(starts) else [0] * (k - len(starts)) + starts
            for value, i in zip(changes, idx, strict=True):
                at.setdefault(i, []).append((var, value))
        if not states:
            for var in (BN.TASK_ID, BN.PROGRAM):
                for value in by_var.get(var, []):
                    if self._apply((loc, var), value) and emit and var == BN.TASK_ID:
                        self._emit_state(loc)
            return
        for i, st in enumerate(states):
            changed = False
            for var, value in at.get(i, ()):
                changed |= self._apply((loc, var), value) and var == BN.TASK_ID
            changed |= self._apply((loc, BN.STATE), st)
            if changed and emit:
                self._emit_state(loc)

    def _emit_state(self, loc: str) -> None:
        event = (
            self._other_event(_Kind.TRANSPORT, BN.STATE)
            if loc == icd.TRANSPORT
            else self._unit_event(loc, BN.STATE)
        )
        if event is not None:
            self._emit(event)

    def _unit_event(self, unit: str, var: str) -> Event | None:
        v = self._values
        if var in (BN.STATE, BN.TASK_ID):
            return UnitStateChanged(
                source=self.name,
                unit=unit,
                state=str(v.get((unit, BN.STATE), "")),
                task_id=str(v.get((unit, BN.TASK_ID), "")),
                program=str(v.get((unit, BN.PROGRAM), "")),
            )
        if var == BN.CARTRIDGE_ID:
            return CartridgeChanged(
                source=self.name, location=unit, cartridge_id=str(v.get((unit, var), ""))
            )
        if var == BN.FAULT_CODE or (var == BN.FAULT_TEXT and v.get((unit, BN.FAULT_CODE))):
            return self._fault(unit)
        return None

    def _other_event(self, kind: _Kind, var: str) -> Event | None:
        v = self._values
        if kind is _Kind.TRANSPORT:
            if var in (BN.STATE, BN.TASK_ID):
                return TransportChanged(
                    source=self.name,
                    state=str(v.get((icd.TRANSPORT, BN.STATE), "")),
                    task_id=str(v.get((icd.TRANSPORT, BN.TASK_ID), "")),
                )
            if var == BN.FAULT_CODE or (
                var == BN.FAULT_TEXT and v.get((icd.TRANSPORT, BN.FAULT_CODE))
            ):
                return self._fault(icd.TRANSPORT)
            return None
        if kind is _Kind.LOAD_PORT:
            return CartridgeChanged(
                source=self.name,
                location=icd.LOAD_PORT,
                cartridge_id=str(v.get((icd.LOAD_PORT, BN.CARTRIDGE_ID), "")),
            )
        return OutputPortChanged(
            source=self.name,
            cartridge_ids=tuple(v.get((icd.OUTPUT_PORT, BN.CARTRIDGE_IDS)) or ()),
        )

    def _fault(self, loc: str) -> FaultChanged:
        v = self._values
        return FaultChanged(
            source=self.name,
            location=loc,
            code=int(v.get((loc, BN.FAULT_CODE)) or 0),
            text=str(v.get((loc, BN.FAULT_TEXT)) or ""),
        )

    def _progress(self, unit: str) -> ProgressChanged:
        v = self._values
        return ProgressChanged(
            source=self.name,
            unit=unit,
            progress=float(v.get((unit, BN.PROGRESS)) or 0.0),
            remaining_seconds=float(v.get((unit, BN.REMAINING_SECONDS)) or 0.0),
        )

    def _pvs(self, unit: str) -> ProcessValuesChanged:
        prefix = len(PV_PREFIX)
        values = {
            k[1][prefix:]: float(val)
            for k, val in self._values.items()
            if k[0] == unit and k[1].startswith(PV_PREFIX) and isinstance(val, int | float)
        }
        return ProcessValuesChanged(source=self.name, unit=unit, values=values)

    def _diff_events(self, before: Mapping[Key, Any], after: Mapping[Key, Any]) -> list[Event]:
        """Events that bring a consumer who saw ``before`` to ``after`` (after a resync)."""
        changed = {k for k in after if before.get(k, _MISSING) != after[k]}
        if not before:
            return []
        events: list[Event] = []
        seen: set[tuple[str, str]] = set()
        for loc, var in sorted(changed):
            if loc == icd.TRANSPORT:
                tag = "state" if var in (BN.STATE, BN.TASK_ID) else "fault"
                if (loc, tag) not in seen:
                    seen.add((loc, tag))
                    events.append(
                        TransportChanged(
                            source=self.name,
                            state=str(after.get((loc, BN.STATE), "")),
                            task_id=str(after.get((loc, BN.TASK_ID), "")),
                        )
                        if tag == "state"
                        else self._fault(loc)
                    )
            elif loc == icd.LOAD_PORT:
                events.append(cast(Event, self._other_event(_Kind.LOAD_PORT, var)))
            elif loc == icd.OUTPUT_PORT:
                events.append(cast(Event, self._other_event(_Kind.OUTPUT_PORT, var)))
            elif var.startswith(PV_PREFIX):
                if (loc, "pv") not in seen:
                    seen.add((loc, "pv"))
                    events.append(self._pvs(loc))
            elif var in _MERGEABLE:
                if (loc, "progress") not in seen:
                    seen.add((loc, "progress"))
                    events.append(self._progress(loc))
            elif var in (BN.STATE, BN.TASK_ID, BN.PROGRAM):
                if (loc, "state") not in seen:
                    seen.add((loc, "state"))
                    events.append(cast(Event, self._unit_event(loc, BN.STATE)))
            elif var == BN.CARTRIDGE_ID:
                events.append(cast(Event, self._unit_event(loc, var)))
            elif var in (BN.FAULT_CODE, BN.FAULT_TEXT):
                if (loc, "fault") not in seen:
                    seen.add((loc, "fault"))
                    events.append(self._fault(loc))
        return events

    # ------------------------------------------------------------------ calls
    def _connected_client(self, operation: str) -> tuple[Client, _Space, int]:
        client, space = self._client, self._space
        if self._state != "connected" or client is None or space is None:
            reason = self.last_loss_reason or self._state
            raise CommunicationLost(self.name, operation, f"not connected ({reason})")
        return client, space, self._gen

    def _unit(self, space: _Space, unit: str, operation: str) -> _Unit:
        try:
            return space.units[unit]
        except KeyError:
            raise InvalidArgument(
                self.name, operation, f"no unit {unit!r} (units: {', '.join(space.units)})"
            ) from None

    async def _wire(self, operation: str, gen: int, coro: Any) -> Any:
        """Await one request; any failure becomes a typed error (and a loss when it is one)."""
        try:
            async with asyncio.timeout(self.settings.request_timeout + 1.0):
                return await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            err = translate(self.name, operation, exc)
            if isinstance(err, CommunicationLost):
                self._mark_lost(f"{operation}: {err.detail}", gen)
            raise err from exc

    async def _call_many(
        self,
        operation: str,
        calls: Sequence[tuple[ua.NodeId, ua.NodeId, list[ua.Variant]]],
    ) -> list[ua.CallMethodResult]:
        client, _space, gen = self._connected_client(operation)
        requests = [
            ua.CallMethodRequest(ObjectId=obj, MethodId=method, InputArguments=args)
            for obj, method, args in calls
        ]
        return cast(
            list[ua.CallMethodResult],
            await self._wire(operation, gen, client.uaclient.call(requests)),
        )

    async def _call(
        self, operation: str, obj: ua.NodeId, method: ua.NodeId, args: list[ua.Variant]
    ) -> list[Any]:
        res = (await self._call_many(operation, [(obj, method, args)]))[0]
        self._check_call(operation, res)
        return [v.Value for v in res.OutputArguments or []]

    def _check_call(self, operation: str, res: ua.CallMethodResult) -> None:
        bad_args = [
            f"argument {i}: {sc.name}"
            for i, sc in enumerate(res.InputArgumentResults or [])
            if not sc.is_good()
        ]
        check_status(self.name, operation, res.StatusCode, "; ".join(bad_args))

    async def _read(self, operation: str, nodes: Sequence[ua.NodeId]) -> list[Any]:
        client, _space, gen = self._connected_client(operation)
        params = ua.ReadParameters(
            NodesToRead=[ua.ReadValueId(NodeId=n, AttributeId=ua.AttributeIds.Value) for n in nodes]
        )
        dvs = await self._wire(operation, gen, client.uaclient.read(params))
        out = []
        for dv in dvs:
            if dv.StatusCode is not None:
                check_status(self.name, operation, dv.StatusCode)
            out.append(_value(dv))
        return out

    # ------------------------------------------------------------------ Shuttle protocol
    async def units(self) -> Mapping[str, UnitInfo]:
        """The units found at the last (re)connect, with their Capabilities."""
        space = self._space
        if space is None:
            raise CommunicationLost(self.name, "units", "never connected")
        return {u.unit_id: UnitInfo(u.unit_id, u.capabilities) for u in space.units.values()}

    async def unit_status(self, unit: str) -> UnitStatus:
        _c, space, _g = self._connected_client("unit_status")
        u = self._unit(space, unit, "unit_status")
        vals = await self._read("unit_status", [u.vars[v] for v in UNIT_VARS])
        d = dict(zip(UNIT_VARS, vals, strict=True))
        return UnitStatus(
            unit_id=unit,
            state=str(d[BN.STATE] or ""),
            cartridge_id=str(d[BN.CARTRIDGE_ID] or ""),
            task_id=str(d[BN.TASK_ID] or ""),
            program=str(d[BN.PROGRAM] or ""),
            progress=float(d[BN.PROGRESS] or 0.0),
            remaining_seconds=float(d[BN.REMAINING_SECONDS] or 0.0),
            fault_code=int(d[BN.FAULT_CODE] or 0),
            fault_text=str(d[BN.FAULT_TEXT] or ""),
        )

    def cached_status(self, unit: str) -> UnitStatus:
        """The unit as last seen by subscription (no wire access)."""
        v = self._values
        return UnitStatus(
            unit_id=unit,
            state=str(v.get((unit, BN.STATE)) or ""),
            cartridge_id=str(v.get((unit, BN.CARTRIDGE_ID)) or ""),
            task_id=str(v.get((unit, BN.TASK_ID)) or ""),
            program=str(v.get((unit, BN.PROGRAM)) or ""),
            progress=float(v.get((unit, BN.PROGRESS)) or 0.0),
            remaining_seconds=float(v.get((unit, BN.REMAINING_SECONDS)) or 0.0),
            fault_code=int(v.get((unit, BN.FAULT_CODE)) or 0),
            fault_text=str(v.get((unit, BN.FAULT_TEXT)) or ""),
        )

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
        _c, space, _g = self._connected_client(op)
        u = self._unit(space, unit, op)
        try:
            parameters = json.dumps(dict(params), allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(self.name, op, f"parameters are not JSON: {exc}") from None
        out = await self._call(
            op,
            u.node,
            u.methods[BN.START_PROGRAM],
            [_s(program), _s(parameters), _s(task_id), _s(cartridge_id)],
        )
        return str(out[0]) if out else ""

    async def _unit_command(self, method: str, unit: str, task_id: str | None) -> None:
        op = f"{method.lower()} {unit}" + (f" ({task_id})" if task_id is not None else "")
        _c, space, _g = self._connected_client(op)
        u = self._unit(space, unit, op)
        args = [_s(task_id)] if task_id is not None else []
        await self._call(op, u.node, u.methods[method], args)

    async def hold(self, unit: str, task_id: str) -> None:
        await self._unit_command(BN.HOLD, unit, task_id)

    async def unhold(self, unit: str, task_id: str) -> None:
        await self._unit_command(BN.UNHOLD, unit, task_id)

    async def stop(self, unit: str, task_id: str) -> None:
        await self._unit_command(BN.STOP, unit, task_id)

    async def abort(self, unit: str, task_id: str) -> None:
        await self._unit_command(BN.ABORT, unit, task_id)

    async def clear(self, unit: str) -> None:
        await self._unit_command(BN.CLEAR, unit, None)

    async def result(self, task_id: str, unit: str | None = None) -> TaskResult:
        """GetResult on ``unit``, or on every unit in one Call request when None."""
        op = f"result {task_id}" + (f" on {unit}" if unit else "")
        _c, space, _g = self._connected_client(op)
        targets = [self._unit(space, unit, op)] if unit is not None else list(space.units.values())
        if not targets:
            return TaskResult(task_id, icd.ResultStatus.UNKNOWN, {})
        results = await self._call_many(
            op, [(u.node, u.methods[BN.GET_RESULT], [_s(task_id)]) for u in targets]
        )
        found: TaskResult | None = None
        for res in results:
            self._check_call(op, res)
            outs = [v.Value for v in res.OutputArguments or []]
            parsed = self._parse_result(op, task_id, outs)
            if parsed.status is not icd.ResultStatus.UNKNOWN:
                found = parsed
                break
            found = found or parsed
        assert found is not None
        return found

    def _parse_result(self, op: str, task_id: str, outs: list[Any]) -> TaskResult:
        if len(outs) != 2:
            raise InstrumentError(self.name, op, f"GetResult answered {len(outs)} values, not 2")
        try:
            status = icd.ResultStatus(outs[0])
        except ValueError:
            raise InstrumentError(self.name, op, f"unknown result Status {outs[0]!r}") from None
        try:
            outputs = json.loads(outs[1] or "{}")
        except (TypeError, ValueError) as exc:
            raise InstrumentError(self.name, op, f"Outputs is not JSON: {exc}") from None
        if not isinstance(outputs, dict):
            raise InstrumentError(self.name, op, "Outputs is not a JSON object")
        return TaskResult(task_id, status, outputs)

    async def load_port(self) -> str:
        _c, space, _g = self._connected_client("load_port")
        return str((await self._read("load_port", [space.load_port_id]))[0] or "")

    async def output_port(self) -> tuple[str, ...]:
        _c, space, _g = self._connected_client("output_port")
        return tuple((await self._read("output_port", [space.output_port_ids]))[0] or ())

    async def transport_status(self) -> tuple[str, str, int, str]:
        """(State, TaskId, FaultCode, FaultText) of the transport, read now."""
        _c, space, _g = self._connected_client("transport_status")
        vals = await self._read(
            "transport_status", [space.transport_vars[v] for v in TRANSPORT_VARS]
        )
        return (str(vals[0] or ""), str(vals[1] or ""), int(vals[2] or 0), str(vals[3] or ""))

    async def move(self, cartridge_id: str, to: str, task_id: str) -> str:
        """Transport.Move. Idempotent by ``task_id`` on the instrument; never re-sent here."""
        op = f"move {cartridge_id} to {to} ({task_id})"
        _c, space, _g = self._connected_client(op)
        out = await self._call(
            op,
            space.transport,
            space.transport_methods[BN.MOVE],
            [_s(cartridge_id), _s(to), _s(task_id)],
        )
        return str(out[0]) if out else ""

    async def clear_transport(self) -> None:
        _c, space, _g = self._connected_client("clear transport")
        await self._call("clear transport", space.transport, space.transport_methods[BN.CLEAR], [])

    # ------------------------------------------------------------------ for tests / bench
    @property
    def namespace_index(self) -> int | None:
        return self._space.ns if self._space else None

    def node_of(self, unit: str, name: str) -> ua.NodeId:
        """NodeId of a unit's variable or method (resolved at connect)."""
        space = self._space
        if space is None:
            raise CommunicationLost(self.name, "node_of", "never connected")
        u = self._unit(space, unit, "node_of")
        if name == "":
            return u.node
        return u.vars.get(name) or u.methods.get(name) or u.process_values[name]


class _Missing:
    pass


_MISSING: Final = _Missing()
